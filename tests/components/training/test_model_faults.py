"""Planted file-system and model-integrity faults: a one-line error naming the path, no
partial model, never a traceback (issue #12 items 6 and 7). Copies of real weld data."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from anomalyops.pipelines.cli.main import main

FIT = ["--size", "128"]


@pytest.fixture(scope="module")
def model(weld, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("faults") / "model"
    assert main(["fit", "--data", str(weld), "--out", str(out), *FIT]) == 0
    return out


def fresh_copy(model: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(model, copy)
    return copy


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize(
    ("plant", "expected"),
    [
        (lambda out: out.write_text("a file"), "exists and is not a directory"),
        (lambda out: None, "is not writable"),  # --out under read-only /sys (root ignores modes)
    ],
    ids=["out-is-a-file", "out-read-only"],
)
def test_bad_out_is_refused_before_any_work(plant, expected, weld, tmp_path, capsys):
    out = tmp_path / "model"
    plant(out)
    if expected == "is not writable":
        out = Path("/sys/anomalyops-test-model")
    started = time.monotonic()
    assert main(["fit", "--data", str(weld), "--out", str(out), *FIT]) == 2
    assert time.monotonic() - started < 5  # refused before decoding or training
    line = one_line_error(capsys)
    assert str(out) in line and expected in line


def test_fit_refuses_to_mix_two_models_and_force_replaces_whole(model, weld, tmp_path, capsys):
    target = fresh_copy(model, tmp_path)
    (target / "metrics.json").write_text("{}")  # what evaluate left for the old model
    (target / "report.html").write_text("<html>old</html>")
    assert main(["fit", "--data", str(weld), "--out", str(target), *FIT]) == 2
    assert "holds a model; pass --force" in one_line_error(capsys)
    assert (target / "metrics.json").is_file()  # refused: nothing touched
    assert main(["fit", "--data", str(weld), "--out", str(target), "--force", *FIT]) == 0
    assert sorted(p.name for p in target.iterdir()) == [
        "detector.json", "detector.safetensors", "reference.json", "thresholds.json",
        "training.json"]  # fmt: skip
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


def test_full_disk_leaves_no_partial_model(weld, tmp_path):
    """RLIMIT_FSIZE makes the kernel refuse the weights write (EFBIG), like a full disk."""
    out = tmp_path / "model"
    script = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))\n"
        "from anomalyops.pipelines.cli.main import main\n"
        f"sys.exit(main(['fit', '--data', {str(weld)!r}, '--out', {str(out)!r}, *{FIT!r}]))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert f"--out {out}: writing the model failed" in done.stderr
    assert "nothing was changed there" in done.stderr
    assert not out.exists() and not list(tmp_path.iterdir())


def test_report_that_is_a_directory_is_refused_first(model, weld, tmp_path, capsys):
    report = tmp_path / "report.html"
    report.mkdir()
    assert main(["evaluate", "--model", str(model), "--data", str(weld),
                 "--report", str(report)]) == 2  # fmt: skip
    assert f"--report {report} is a directory" in one_line_error(capsys)


def _png_bomb(path: Path, side: int = 30000) -> None:
    """A 30000x30000 8-bit grey PNG of a few hundred KB: 900 M pixels if decoded."""
    import struct
    import zlib

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    packer, row = zlib.compressobj(9), b"\0" * (side + 1)
    data = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data)
                     + chunk(b"IEND", b""))  # fmt: skip


ODD = {  # name in train/good -> what the skip says
    "x.png": "not a regular file",
    "fifo.png": "not a regular file",
    "loop.png": "Too many levels of symbolic links",
    "dangling.png": "No such file or directory",
    "bomb.png": "refused as a decompression bomb",
}


def test_odd_entries_in_train_good_are_named_and_skipped(weld, tmp_path, capsys):
    data = tmp_path / "weld"
    shutil.copytree(weld, data)
    good = data / "train" / "good"
    (good / "x.png").mkdir()
    os.mkfifo(good / "fifo.png")
    os.symlink("loop.png", good / "loop.png")  # a symlink to itself
    os.symlink("nowhere.png", good / "dangling.png")
    _png_bomb(good / "bomb.png")
    first = sorted(good.glob("*.png"))[0]
    shutil.copy(first, os.fsdecode(os.fsencode(good) + b"/\xff\xfe_bad.png"))  # not UTF-8
    shutil.copy(first, os.fsdecode(os.fsencode(data / "test" / "good") + b"/\xff_bad.png"))
    out = tmp_path / "model"
    assert main(["fit", "--data", str(data), "--out", str(out), *FIT]) == 0
    printed = capsys.readouterr().out
    for name, says in ODD.items():
        assert f"skipped {good / name}: " in printed and says in printed, name
    training = json.loads((out / "training.json").read_text())
    images = len(list(weld.glob("train/good/*.png"))) + 1  # the non-UTF-8 one trains too
    assert training["train_images"] == training["calibration_images"] == images
    assert main(["evaluate", "--model", str(out), "--data", str(data)]) == 0  # hashes its name
    assert main(["fit", "--data", str(data), "--out", str(tmp_path / "m2"), "--on-error",
                 "raise", *FIT]) == 2  # fmt: skip
    line = one_line_error(capsys)
    assert "train/good/" in line and any(says in line for says in ODD.values())


def _edit_settings(model: Path, key: str, value, resign: bool = False) -> None:
    from anomalyops.components.detectors.base import settings_sha256

    path = model / "detector.json"
    description = json.loads(path.read_text())
    description["config"][key] = value
    if resign:  # consistent checksum: the settings themselves must be refused
        description["settings_sha256"] = settings_sha256(description)
    path.write_text(json.dumps(description))


def _replace_weights(model: Path, make) -> None:
    weights = model / "detector.safetensors"
    weights.unlink()
    make(weights)


@pytest.mark.parametrize(
    ("plant", "expected"),
    [
        (lambda m: _edit_settings(m, "input_size", [256, 256]), "settings do not match"),
        (lambda m: _edit_settings(m, "standardise", True), "settings do not match"),
        (lambda m: _edit_settings(m, "backbone", "resnet18"), "settings do not match"),
        (lambda m: _edit_settings(m, "input_size", "128", resign=True),
         "detector.json: its settings do not rebuild a patchcore"),
        (lambda m: (m / "detector.json").write_text("[" * 100000 + "]" * 100000),
         "detector.json: not readable JSON (RecursionError"),
        (lambda m: (m / "detector.json").write_text('{"seed": ' + "9" * 5000 + "}"),
         "detector.json: not readable JSON (ValueError"),
        (lambda m: _replace_weights(m, lambda w: w.symlink_to("/dev/zero")),
         "detector.safetensors: not a regular file"),
        (lambda m: _replace_weights(m, lambda w: w.mkdir()),
         "detector.safetensors: not a regular file"),
        (lambda m: (m / "thresholds.json").symlink_to("/dev/zero") if (
            m / "thresholds.json").unlink() is None else None,
         "thresholds.json: not a regular file"),
    ],
    ids=["size-edited", "standardise-edited", "backbone-edited", "size-as-text", "deep-json",
         "huge-integer", "weights-dev-zero", "weights-folder", "thresholds-dev-zero"],
)  # fmt: skip
def test_edited_settings_and_odd_files_are_named(plant, expected, model, weld, tmp_path, capsys):
    damaged = fresh_copy(model, tmp_path)
    plant(damaged)
    image = sorted((weld / "test" / "good").glob("*.png"))[0]
    assert main(["predict", "--model", str(damaged), str(image)]) == 2
    line = one_line_error(capsys)
    assert expected in line and str(damaged) in line


def _zero_bank(model: Path) -> None:
    weights = model / "detector.safetensors"
    raw = bytearray(weights.read_bytes())
    header = 8 + int.from_bytes(raw[:8], "little")
    raw[header:] = bytes(len(raw) - header)
    weights.write_bytes(bytes(raw))


def _truncate(model: Path) -> None:
    weights = model / "detector.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])


@pytest.mark.parametrize(
    ("plant", "expected"),
    [
        (_zero_bank, "does not match"),
        (_truncate, "does not match"),
        (lambda m: (m / "detector.json").write_text("[1, 2]"), "detector.json: (top level)"),
        (lambda m: (m / "thresholds.json").write_text('{"image": {}, "pixel": {"threshold": 1}}'),
         "thresholds.json: image: 'threshold' is a required property"),
        (lambda m: (m / "thresholds.json").write_text(
            '{"image": {"threshold": "47"}, "pixel": {"threshold": 1}}'),
         "thresholds.json: image.threshold: '47' is not of type 'number'"),
        (lambda m: (m / "thresholds.json").write_text("{"), "thresholds.json: not readable JSON"),
        (lambda m: (m / "thresholds.json").write_text(
            '{"image": {"threshold": 1e400}, "pixel": {"threshold": 1}}'),
         "thresholds.json image: threshold must be finite and above 0, got inf"),
    ],
    ids=["zeroed-bank", "truncated-weights", "config-is-a-list", "threshold-missing",
         "threshold-string", "thresholds-broken", "threshold-infinite"],
)  # fmt: skip
def test_damaged_model_is_a_clear_error(plant, expected, model, weld, tmp_path, capsys):
    damaged = fresh_copy(model, tmp_path)
    plant(damaged)
    image = sorted((weld / "test" / "good").glob("*.png"))[0]
    assert main(["predict", "--model", str(damaged), str(image)]) == 2
    line = one_line_error(capsys)
    assert expected in line and str(damaged) in line


def test_onnx_that_does_not_match_model_json_is_not_deployed(model, tmp_path):
    from anomalyops.components.deploy.export import export
    from anomalyops.serving.contract.model import ContractError
    from anomalyops.serving.triton.repository import add_model

    exported = tmp_path / "export"
    export(model, exported)
    add_model(tmp_path / "repo", "weld", exported)  # intact: deployed
    other = tmp_path / "other.onnx"
    other.write_bytes(b"\x08\x07" + (exported / "model.onnx").read_bytes()[2:])
    shutil.copy(other, exported / "model.onnx")
    with pytest.raises(ContractError, match=r"model\.onnx: sha256 .* does not match"):
        add_model(tmp_path / "repo", "weld", exported)
    assert sorted(p.name for p in (tmp_path / "repo" / "weld").iterdir() if p.is_dir()) == ["1"]
    with pytest.raises(ValueError, match="Triton model name 'weld\"2' is invalid"):
        add_model(tmp_path / "repo", 'weld"2', exported)


@pytest.mark.parametrize("where", ["data", "parent-of-data"])
def test_fit_force_never_deletes_the_dataset(where, weld, tmp_path, capsys):
    data = tmp_path / "d"
    shutil.copytree(weld, data)
    files = sorted(data.rglob("*"))
    out = data if where == "data" else tmp_path
    assert main(["fit", "--data", str(data), "--out", str(out), "--force", *FIT]) == 2
    assert str(out) in one_line_error(capsys)
    from anomalyops.components.training.model_dir import OutputError
    from anomalyops.components.training.train import train

    with pytest.raises(OutputError, match="which is being read; choose a folder outside it"):
        train(data, out, force=True)  # even a folder that holds a model besides the data
    assert sorted(data.rglob("*")) == files


def test_fit_force_keeps_a_folder_that_is_no_model(weld, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["fit", "--data", str(weld), "--out", str(out), "--force", *FIT]) == 2
    assert "holds no model" in one_line_error(capsys)
    assert (out / "notes.txt").read_text() == "mine"


def test_adapt_refuses_another_model_and_a_non_empty_folder(model, weld, tmp_path):
    from anomalyops.components.training.fewshot import adapt
    from anomalyops.components.training.model_dir import OutputError

    other = fresh_copy(model, tmp_path)
    before = {p.name: p.read_bytes() for p in other.iterdir()}
    shots = sorted((weld / "train" / "good").glob("*.png"))[:2]
    with pytest.raises(OutputError, match="holds a model; pass --force"):
        adapt(shots, other, base=model, progress=False)
    assert {p.name: p.read_bytes() for p in other.iterdir()} == before
    (tmp_path / "mixed").mkdir()
    (tmp_path / "mixed" / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="holds no model"):
        adapt(shots, tmp_path / "mixed", base=model, progress=False, force=True)


def test_export_refuses_a_trained_model_folder(model, tmp_path, capsys):
    target = fresh_copy(model, tmp_path)
    reference = (target / "reference.json").read_bytes()
    for out in (target, model):  # another model, and the one being exported
        assert main(["export", "--model", str(model), "--out", str(out)]) == 2
        assert str(out) in one_line_error(capsys)
    assert (target / "reference.json").read_bytes() == reference
    assert not (target / "model.onnx").exists()


def test_evaluate_report_onto_the_weights_is_refused(model, weld, tmp_path, capsys):
    copy = fresh_copy(model, tmp_path)
    weights = (copy / "detector.safetensors").read_bytes()
    assert main(["evaluate", "--model", str(copy), "--data", str(weld),
                 "--report", str(copy / "detector.safetensors")]) == 2  # fmt: skip
    assert "is a file of the trained model" in one_line_error(capsys)
    assert (copy / "detector.safetensors").read_bytes() == weights


def test_full_disk_export_names_the_folder_and_leaves_nothing(model, tmp_path):
    out = tmp_path / "export"
    script = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (200000, 200000))\n"
        "from anomalyops.pipelines.cli.main import main\n"
        f"sys.exit(main(['export', '--model', {str(model)!r}, '--out', {str(out)!r}]))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert f"--out {out}: writing the model failed" in done.stderr, done.stderr[-2000:]
    assert not list(tmp_path.iterdir())
