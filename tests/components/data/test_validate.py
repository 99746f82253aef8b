"""The validate step on copies of real weld images with one planted fault each."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageFilter

from anomalyops.components.data.manifest import dhash, hamming, robust_z
from anomalyops.components.data.validate import ValidationError, validate


def copy_good(weld: Path, dest: Path, limit: int | None = None, size=None) -> Path:
    """A copy of weld's train/good (optionally resized to one resolution)."""
    good = dest / "train" / "good"
    good.mkdir(parents=True)
    for path in sorted((weld / "train" / "good").glob("*.png"))[:limit]:
        if size is None:
            shutil.copy(path, good / path.name)
        else:
            Image.open(path).resize(size).save(good / path.name)
    return good


@pytest.fixture
def good(weld, tmp_path) -> Path:
    return copy_good(weld, tmp_path / "weld")


def findings(report, severity="warnings") -> dict[str, list[str]]:
    return {f.check: [Path(p).name for p in f.files] for f in getattr(report, severity)}


def test_real_weld_passes_with_its_own_warnings(weld, tmp_path):
    report = validate(weld, tmp_path / "out")
    assert report.passed and report.images == 37
    # weld really holds two byte-identical files and mixed resolutions: reported, not fatal
    assert findings(report)["exact_duplicates"] == ["6-+2.png", "6-+3.png"]
    assert "uniform_size" in findings(report)
    saved = json.loads((tmp_path / "out" / "validation.json").read_text())
    assert saved["passed"] and len(saved["manifest"]) == 37
    row = saved["manifest"][0]
    for column in ("sha256", "dhash", "format", "width", "height", "channels", "bit_depth",
                   "brightness", "contrast", "sharpness", "decode_ok"):  # fmt: skip
        assert row[column] is not None, column
    assert row["format"] == "png" and row["channels"] == 1 and row["bit_depth"] == 8
    page = (tmp_path / "out" / "validation.html").read_text()
    assert "PASSED" in page and "6-+3.png" in page


def test_corrupt_file_is_a_hard_failure(good, tmp_path):
    (good / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    (good / "empty.png").write_bytes(b"")
    with pytest.raises(ValidationError) as caught:
        validate(good.parent.parent, tmp_path / "out")
    assert "broken.png" in str(caught.value) and "empty.png" in str(caught.value)
    assert findings(caught.value.report, "hard_failures")["decodes"] == ["broken.png", "empty.png"]
    assert "FAILED" in (tmp_path / "out" / "validation.html").read_text()


def test_planted_duplicate_is_reported(good):
    target = sorted(good.glob("3-*.png"))[0]
    shutil.copy(target, good / "zz_copy.png")
    report = validate(good.parent.parent)
    assert {target.name, "zz_copy.png"} <= set(findings(report)["exact_duplicates"])


def test_near_duplicate_is_reported(good):
    source = good / "4-+10.png"
    image = Image.open(source)
    image.point(lambda v: min(255, v + 3)).save(good / "zz_brighter.png")
    report = validate(good.parent.parent)
    assert "zz_brighter.png" in findings(report)["near_duplicates"]


def test_too_dark_image_is_flagged(good):
    Image.open(good / "4-+10.png").point(lambda v: v // 10).save(good / "zz_dark.png")
    assert "zz_dark.png" in findings(validate(good.parent.parent))["brightness_outliers"]


def test_blurred_image_is_flagged(good):
    Image.open(good / "4-+10.png").filter(ImageFilter.GaussianBlur(6)).save(good / "zz_blur.png")
    assert "zz_blur.png" in findings(validate(good.parent.parent))["sharpness_outliers"]


def test_wrong_size_is_hard_only_when_one_resolution_is_required(weld, tmp_path):
    good = copy_good(weld, tmp_path / "uniform", limit=15, size=(400, 256))
    Image.open(good / "4-+10.png").resize((320, 200)).save(good / "zz_small.png")
    assert findings(validate(good.parent.parent))["uniform_size"] == ["zz_small.png"]
    with pytest.raises(ValidationError, match=r"zz_small\.png") as caught:
        validate(good.parent.parent, require_uniform_size=True)
    assert findings(caught.value.report, "hard_failures") == {"uniform_size": ["zz_small.png"]}


def test_too_few_images_is_a_hard_failure(weld, tmp_path):
    good = copy_good(weld, tmp_path / "few", limit=4)
    with pytest.raises(ValidationError, match=r"min_images.*observed 4"):
        validate(good.parent.parent, min_images=10)


def test_helpers():
    assert hamming("ff", "0f") == 4
    z = robust_z([1.0, 1.1, 0.9, 1.0, 1.05, 9.0])
    assert abs(z[-1]) > 10 and all(abs(v) < 2 for v in z[:-1])
    import numpy as np

    ramp = np.tile(np.arange(64, dtype=np.uint8) * 4, (64, 1))
    assert dhash(ramp) == "f" * 16 and dhash(ramp[:, ::-1]) == "0" * 16


def test_degenerate_images_are_hard_failures_by_default(good, tmp_path):
    Image.new("L", (1, 1), 128).save(good / "zz_1x1.png")
    Image.new("L", (400, 256), 0).save(good / "zz_black.png")  # a dead camera
    (good / "zz_folder.png").mkdir()  # not a file at all
    with pytest.raises(ValidationError) as caught:
        validate(good.parent.parent, tmp_path / "out")
    hard = findings(caught.value.report, "hard_failures")
    assert hard["min_size"] == ["zz_1x1.png"]
    assert "zz_1x1.png" in hard["size_far_outliers"]
    assert hard["blank"] == ["zz_1x1.png", "zz_black.png"]
    assert "zz_black.png" in hard["sharpness_far_outliers"]
    assert hard["decodes"] == ["zz_folder.png"]
    assert "zz_folder.png: not a readable file" in json.dumps(caught.value.report.manifest)


def test_fit_skips_or_refuses_a_1x1_training_image(weld, tmp_path, capsys):
    """The validation step's min_size rule in fit: skipped and named, or refused with
    --on-error raise, as for an image that does not decode."""
    from anomalyops.pipelines.cli.main import main

    good = copy_good(weld, tmp_path / "weld", limit=12)
    Image.new("L", (1, 1), 128).save(good / "zz_1x1.png")
    data = str(good.parent.parent)
    assert main(["fit", "--data", data, "--out", str(tmp_path / "m"), "--on-error", "raise",
                 "--size", "64", "--coreset", "0.01"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "zz_1x1.png: 1x1 px, a side under 32" in err and "Traceback" not in err
    assert not (tmp_path / "m").exists()
    assert main(["fit", "--data", data, "--out", str(tmp_path / "m"), "--size", "64",
                 "--coreset", "0.01"]) == 0  # fmt: skip
    assert "skipped" in capsys.readouterr().out and (tmp_path / "m").is_dir()
