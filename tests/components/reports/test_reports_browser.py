"""The training pipeline's validation and evaluation reports, opened in a real browser:
they render, and every picture in them loads."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from anomalyops.components.data.validate import validate
from anomalyops.components.evaluation.evaluate import evaluate
from anomalyops.components.training.train import train

ALL_PICTURES_LOADED = "Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)"


@pytest.fixture
def page(browser):
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    yield page
    page.close()
    assert errors == []


def test_validation_report_renders(weld, tmp_path, page):
    report = validate(weld, tmp_path)
    page.goto((tmp_path / "validation.html").as_uri())
    assert page.locator("h1").inner_text() == "Good-image validation: PASSED"
    rows = page.locator("table").last.locator("tr")
    assert rows.count() == report.images + 1  # header + one row per good image
    assert page.evaluate(ALL_PICTURES_LOADED)


def small_weld(weld: Path, root: Path) -> Path:
    """All of weld's good training images, 6 good and 12 defective test images (with masks):
    the report's layout in seconds rather than a minute."""
    shutil.copytree(weld / "train", root / "train")
    for split, count in (("good", 6), ("defective", 12)):
        (root / "test" / split).mkdir(parents=True)
        for image in sorted((weld / "test" / split).glob("*.png"))[:count]:
            shutil.copy(image, root / "test" / split)
            mask = weld / "ground_truth" / split / f"{image.stem}_mask.png"
            if mask.is_file():
                (root / "ground_truth" / split).mkdir(parents=True, exist_ok=True)
                shutil.copy(mask, root / "ground_truth" / split)
    return root


def test_evaluation_report_renders_with_its_pictures(weld, tmp_path, page):
    data = small_weld(weld, tmp_path / "weld")
    trained = train(data, tmp_path / "model", "patchcore", progress=False)
    evaluate(trained.model_dir, data, tmp_path / "report.html", progress=False)
    page.goto((tmp_path / "report.html").as_uri())
    assert page.locator("h1").inner_text() == "patchcore on weld"
    pictures = page.locator("img")
    assert pictures.count() == 1 + 18  # the histogram and every test image's map
    page.wait_for_function(ALL_PICTURES_LOADED)
    widths = page.evaluate("Array.from(document.images).map(i => i.naturalWidth)")
    assert min(widths) > 0 and widths[0] == 640  # the 6.4 in × 100 dpi histogram
    assert page.locator(".tile").count() == pictures.count() - 1
