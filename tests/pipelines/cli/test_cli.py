import contextlib
import io
import json

import pytest

from anomalyops.pipelines.cli.main import main


@pytest.fixture(scope="module")
def fitted(weld, tmp_path_factory):
    """The model folder `fit` wrote and what it printed."""
    out, printed = tmp_path_factory.mktemp("cli") / "model", io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["fit", "--data", str(weld), "--out", str(out)]) == 0
    return out, printed.getvalue()


@pytest.fixture(scope="module")
def model(fitted):
    return fitted[0]


def test_fit_names_the_good_images_that_set_the_threshold(fitted):
    model, printed = fitted
    highest = json.loads((model / "training.json").read_text())["highest_held_out"]
    assert "target not guaranteed: needs ≥ 99 good images" in printed  # weld's 37
    named = f"highest out-of-fold good scores: {highest[0]['file']} {highest[0]['score']:.4g}, "
    assert named in printed


def test_fit_evaluate_predict(model, weld, tmp_path, capsys):
    assert main(["evaluate", "--model", str(model), "--data", str(weld)]) == 0
    assert "image_auroc" in capsys.readouterr().out and (model / "report.html").is_file()
    images = sorted((weld / "test" / "defective").glob("*.png"))[:2]
    out = tmp_path / "pred"
    assert main(["predict", "--model", str(model), "--out", str(out), *map(str, images)]) == 0
    rows = json.loads((out / "predictions.json").read_text())
    assert [r["image"] for r in rows] == list(map(str, images))
    assert len(list(out.glob("*_map.png"))) == 2


def test_threshold_override_changes_labels(model, weld, capsys):
    image = str(sorted((weld / "test" / "good").glob("*.png"))[0])
    main(["predict", "--model", str(model), "--threshold", "1e-6", image])
    assert "anomalous" in capsys.readouterr().out
    main(["predict", "--model", str(model), "--threshold", "1e9", image])
    assert "\tgood" in capsys.readouterr().out
    for bad in ("0", "-1", "nan", "inf", "1e400"):  # a threshold that would label all 'good'
        with pytest.raises(SystemExit) as stopped:
            main(["predict", "--model", str(model), "--threshold", bad, image])
        assert stopped.value.code == 2
        assert "finite and above 0" in capsys.readouterr().err


def test_bad_inputs_are_clear_errors(model, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["fit", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "m")]) == 2
    assert "train/good" in capsys.readouterr().err
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"")
    assert main(["predict", "--model", str(model), str(broken)]) == 2
    assert "broken.png: empty file" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(tmp_path), "--data", str(tmp_path)]) == 2


def test_blank_frames_are_unusable_never_good(model, weld, tmp_path, capsys):
    from PIL import Image

    frames = []
    for value in (0, 255):  # a dead and a blown-out camera
        frames.append(tmp_path / f"blank{value}.png")
        Image.new("RGB", (256, 256), (value,) * 3).save(frames[-1])
    good = str(sorted((weld / "test" / "good").glob("*.png"))[0])
    assert main(["predict", "--model", str(model), "--out", str(tmp_path), good,
                 *map(str, frames)]) == 0  # fmt: skip
    err = capsys.readouterr().err
    rows = json.loads((tmp_path / "predictions.json").read_text())
    assert [r["label"] for r in rows[1:]] == ["unusable", "unusable"]
    assert rows[0]["label"] != "unusable" and rows[0]["problems"] == []
    assert "blank0.png" in err and "brightness 0 outside" in err


@pytest.fixture
def restore_threads():
    """main() sizes the process's pools; put them back for the tests that follow."""
    import faiss
    import torch

    threads, omp = torch.get_num_threads(), faiss.omp_get_max_threads()
    yield
    torch.set_num_threads(threads)
    faiss.omp_set_num_threads(omp)


def test_threads_follow_the_budget_and_the_flag(model, weld, caplog, capsys, restore_threads):
    import faiss
    import torch

    from anomalyops.serving.threads import cpu_budget

    training = json.loads((model / "training.json").read_text())
    assert training["threads"] == cpu_budget().threads  # fit ran on the CPUs it was given
    image = str(sorted((weld / "test" / "good").glob("*.png"))[0])
    with caplog.at_level("INFO", logger="anomalyops"):
        assert main(["predict", "--model", str(model), "--threads", "1", image]) == 0
    assert "threads: 1 (--threads)" in caplog.text
    assert (torch.get_num_threads(), faiss.omp_get_max_threads()) == (1, 1)
    with pytest.raises(SystemExit) as stopped:
        main(["predict", "--model", str(model), "--threads", "0", image])
    assert stopped.value.code == 2 and "at least 1" in capsys.readouterr().err


def test_device_flag_runs_here_and_a_missing_gpu_is_one_line(model, weld, tmp_path, capsys):
    import torch

    image = str(sorted((weld / "test" / "good").glob("*.png"))[0])
    assert main(["predict", "--model", str(model), "--device", "cpu", image]) == 0
    out = tmp_path / "never"
    if not torch.cuda.is_available():
        assert main(["fit", "--data", str(weld), "--out", str(out), "--device", "cuda"]) == 2
        error = capsys.readouterr().err
        assert "no CUDA GPU" in error and "Traceback" not in error and not out.exists()
    assert main(["fit", "--data", str(weld), "--out", str(out), "--device", "tpu"]) == 2
    assert "auto, cpu, cuda" in capsys.readouterr().err


def test_training_steps_are_refused_by_a_detector_that_does_not_learn(weld, tmp_path, capsys):
    out = tmp_path / "never"
    assert main(["fit", "--data", str(weld), "--out", str(out), "--steps", "5"]) == 2
    error = capsys.readouterr().err
    assert "unknown settings ['steps']" in error and "patchcore" in error and not out.exists()
