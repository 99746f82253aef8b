"""The one rule every model and report writer follows (components/training/model_dir.py):
`--force` replaces only a model's own folder, never the data or a folder holding other
files; a failed write names the path and changes nothing."""

from __future__ import annotations

import subprocess
import sys

import pytest

from anomalyops.components.training.model_dir import (
    ModelOutput,
    OutputError,
    check_writable_file,
)


def plant_model(folder, kind="trained"):
    folder.mkdir(parents=True, exist_ok=True)
    names = (
        ("detector.json", "detector.safetensors")
        if kind == "trained"
        else ("model.json", "model.onnx")
    )
    for name in names:
        (folder / name).write_text("{}")
    return folder


def write_model(target, force=False, **options):
    with ModelOutput(target, force, **options) as staging:
        plant_model(staging)
        (staging / "thresholds.json").write_text("new")


@pytest.mark.parametrize("where", ["same", "parent", "inside"])
def test_force_never_replaces_the_data_or_what_holds_it(where, tmp_path):
    data = tmp_path / "data"
    (data / "train" / "good").mkdir(parents=True)
    (data / "train" / "good" / "a.png").write_bytes(b"png")
    target = {"same": data, "parent": tmp_path, "inside": data / "model"}[where]
    with pytest.raises(OutputError, match=f"lies inside {data}"):
        ModelOutput(target, force=True, protect=[data])
    assert (data / "train" / "good" / "a.png").read_bytes() == b"png"


def test_force_never_replaces_a_folder_that_holds_no_model(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="is not empty and holds no model"):
        ModelOutput(target, force=True)
    assert (target / "notes.txt").read_text() == "mine"


def test_force_replaces_a_model_but_not_files_beside_it(tmp_path):
    target = plant_model(tmp_path / "model")
    (target / "report.html").write_text("old report")  # evaluate's: part of the model
    with pytest.raises(OutputError, match="holds a model; pass --force"):
        write_model(target)
    write_model(target, force=True)
    assert sorted(p.name for p in target.iterdir()) == [
        "detector.json", "detector.safetensors", "thresholds.json"]  # fmt: skip
    (target / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match=r"other files \(notes.txt\)"):
        write_model(target, force=True)
    assert (target / "notes.txt").read_text() == "mine"


def test_an_export_never_replaces_a_trained_model(tmp_path):
    target = plant_model(tmp_path / "model")
    with pytest.raises(OutputError, match="holds a trained model; give another folder"):
        ModelOutput(target, force=True, kind="exported")
    ModelOutput(plant_model(tmp_path / "export", "exported"), force=True, kind="exported")


def test_a_model_file_is_never_a_report(tmp_path):
    model = plant_model(tmp_path / "model")
    with pytest.raises(OutputError, match="is a file of the trained model"):
        check_writable_file(model / "detector.safetensors", "--report")
    assert check_writable_file(model / "report.html", "--report") == model / "report.html"


def test_full_disk_names_the_file_and_keeps_the_old_one(tmp_path):
    """RLIMIT_FSIZE makes the kernel refuse the write (EFBIG), as a full disk would."""
    report = tmp_path / "report.html"
    report.write_text("old")
    script = (
        "import resource, signal\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))\n"
        "from anomalyops.components.training.model_dir import write_file\n"
        f"write_file({str(report)!r}, 'x' * 5000, '--report')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 1
    assert f"OutputError: --report {report}: writing failed (File too large)" in done.stderr
    assert report.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]  # no staging left
