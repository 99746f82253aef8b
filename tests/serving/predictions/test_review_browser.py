"""The review page in a real browser (Debian's chromium), on real weld images and maps.

Rows are written through PredictionLog with what the exported model really says about
real weld images (onnxruntime on model.onnx, as Triton's python backend runs it).
`ANOMALYOPS_SCREENSHOTS=DIR` also saves the screenshot there; the README shows
tests/serving/predictions/screenshots/review.png, refreshed that way.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import expect

from anomalyops.serving.contract.model import load_contract
from anomalyops.serving.images.decode import load_image
from anomalyops.serving.images.statistics import image_statistics
from anomalyops.serving.predictions.app import create_app
from anomalyops.serving.predictions.log import PredictionLog, PredictionRecord
from anomalyops.serving.predictions.review import References


@pytest.fixture(scope="module")
def weld_log(weld, weld_export, tmp_path_factory) -> Path:
    """A prediction log of real scores, maps and kept images: 8 defective and 4 good parts."""
    import onnxruntime

    contract = load_contract(weld_export)
    session = onnxruntime.InferenceSession(str(weld_export / "model.onnx"))

    def load(paths):
        return np.stack([load_image(path, contract.input_size) for path in paths])

    defective = sorted((weld / "test" / "defective").glob("*.png"))
    _, defect_scores = session.run(["anomaly_map", "score"], {"image": load(defective)})
    # the 8 defects the model scores highest: the ones a plant's review queue would hold
    paths = sorted((weld / "test" / "good").glob("*.png"))[:4]
    paths += [defective[i] for i in np.argsort(-defect_scores)[:8]]
    images = load(paths)
    maps, scores = session.run(["anomaly_map", "score"], {"image": images})
    threshold = contract.image_threshold
    path = tmp_path_factory.mktemp("review") / "predictions.db"
    records = [
        PredictionRecord(
            "weld",
            float(score),
            threshold,
            "anomalous" if score > threshold else "good",
            **image_statistics(image),
            source_size="{}x{}".format(*Image.open(source).size),
            model_version="1",
            model_sha256=contract.onnx["sha256"],
            line="line-1",
            image=source.read_bytes(),
            anomaly_map=anomaly_map[0],
        )
        for source, image, score, anomaly_map in zip(paths, images, scores, maps, strict=True)
    ]
    with PredictionLog(path) as log:
        log.write(records)
    return path


def test_mark_false_alarm_in_the_browser_is_stored_and_counted(
    weld_log, weld_export, web_server, browser, tmp_path
):
    with PredictionLog(weld_log) as log:
        flagged = log.recent("weld", label="anomalous")
    assert len(flagged) >= 3, "the exported model should flag several defective weld images"
    app = create_app(weld_log, References(reference=weld_export), variant="weld")
    with web_server(app) as url:
        page = browser.new_page(viewport={"width": 1500, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(url + "/")
        cards = page.locator("article.card")
        assert cards.count() == len(flagged)
        page.wait_for_function(
            "Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)"
        )
        assert page.locator("#histogram rect.reference").count() == 30

        page.fill("#reviewer", "ana")
        newest = cards.nth(0)
        newest.get_by_role("button", name="False alarm").click()
        page.wait_for_selector(f"article.card.false_alarm[data-id='{flagged[0]['id']}']")
        assert "false alarm · ana" in newest.locator(".verdict").inner_text()
        expect(page.locator("#false-alarms td.false-alarms").first).to_have_text("1")
        # The page refreshes its counts after each mark: wait for them (Playwright's expect).
        expect(page.locator("#false-alarms td.share").first).to_have_text("100 %")

        page.keyboard.press("j")  # next card, then the key for a confirmed defect
        page.keyboard.press("d")
        page.wait_for_selector(f"article.card.confirmed_defect[data-id='{flagged[1]['id']}']")
        expect(page.locator("#false-alarms td.share").first).to_have_text("50 %")
        page.locator("#status").filter(has_text="confirmed defect by ana").wait_for()

        page.reload()  # stored, not only drawn
        assert "false alarm · ana" in page.locator("article.card").nth(0).inner_text()
        page.wait_for_function(
            "Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)"
        )
        page.locator(".card").nth(2).focus()
        shot = tmp_path / "review.png"
        page.screenshot(path=str(shot), full_page=True)
        page.close()
    assert errors == []
    with PredictionLog(weld_log) as log:
        first, second = log.get(flagged[0]["id"]), log.get(flagged[1]["id"])
    assert (first["verdict"], first["reviewer"]) == ("false_alarm", "ana")
    assert (second["verdict"], second["reviewer"]) == ("confirmed_defect", "ana")
    picture = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert picture.shape[1] == 1500 and picture.std() > 20  # drawn, not a blank page
    if os.environ.get("ANOMALYOPS_SCREENSHOTS"):  # 256 colours: a third of the bytes
        target = Path(os.environ["ANOMALYOPS_SCREENSHOTS"]) / "review.png"
        Image.open(shot).convert("RGB").quantize(256).save(target, optimize=True)
