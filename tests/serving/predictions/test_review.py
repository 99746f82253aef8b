"""The review app over HTTP (the real uvicorn): page, filters, pictures, verdicts, counts."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import pytest
from PIL import Image

from anomalyops.serving.contract.reference import Reference, ReferenceError
from anomalyops.serving.predictions.app import create_app
from anomalyops.serving.predictions.log import PredictionLog, PredictionRecord
from anomalyops.serving.predictions.review import References
from anomalyops.serving.triton.repository import add_model


def flagged(line: str, score: float = 20.0, **extra) -> PredictionRecord:
    return PredictionRecord("weld", score, 10.0, "anomalous", 100.0, 20.0, 50.0, line=line,
                            model_version="3", **extra)  # fmt: skip


@pytest.fixture
def weld_image(weld) -> bytes:
    return sorted((weld / "test" / "defective").glob("*.png"))[0].read_bytes()


@pytest.fixture
def log_path(tmp_path, weld_image):
    """Three flagged rows on two lines (one with a kept image and a hot top-left map), one good."""
    hot = np.zeros((64, 64), dtype=np.float32)
    hot[:16, :16] = 5.0
    with PredictionLog(tmp_path / "log.db") as log:
        log.write(
            [
                flagged("line-1", image=weld_image, anomaly_map=hot),
                flagged("line-2", 30.0),
                flagged("<script>alert(1)</script>", 25.0),
                PredictionRecord("weld", 2.0, 10.0, "good", 100.0, 20.0, 50.0, line="line-1"),
            ]
        )
    return tmp_path / "log.db"


@pytest.fixture
def review(log_path, web_server):
    with web_server(create_app(log_path)) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client


def ids(response: httpx.Response) -> list[int]:
    assert response.status_code == 200, response.text
    return [row["id"] for row in response.json()]


def test_page_lists_flagged_images_escaped_with_security_headers(review):
    response = review.get("/")
    assert response.status_code == 200
    page = response.text
    assert page.count("<article") == 3  # flagged only: the good one is not shown
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert 'src="predictions/1/overlay.png"' in page and "weld v3" in page
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert review.get("/static/review.js").status_code == 200


def test_filters_by_line_label_verdict_and_time(review):
    assert ids(review.get("/api/predictions", params={"line": "line-1"})) == [1]
    assert ids(review.get("/api/predictions", params={"label": "any"})) == [4, 3, 2, 1]
    assert ids(review.get("/api/predictions", params={"limit": 2})) == [3, 2]
    assert ids(review.get("/api/predictions", params={"variant": "other"})) == []
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    assert ids(review.get("/api/predictions", params={"since": tomorrow})) == []
    assert ids(review.get("/api/predictions", params={"until": tomorrow, "line": ""})) == [3, 2, 1]
    review.post("/api/predictions/2/verdict", json={"verdict": "false_alarm", "reviewer": "ana"})
    assert ids(review.get("/api/predictions", params={"verdict": "false_alarm"})) == [2]
    assert ids(review.get("/api/predictions", params={"verdict": "unreviewed"})) == [3, 1]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"limit": 1000}, "query.limit"),
        ({"limit": 0}, "query.limit"),
        ({"verdict": "maybe"}, "query.verdict"),
        ({"since": "yesterday"}, "query.since"),
        ({"line": "x" * 101}, "query.line"),
    ],
)
def test_bad_filters_are_one_line_errors_naming_the_field(review, query, field):
    response = review.get("/", params=query)
    assert response.status_code == 422
    assert response.text.startswith(f"bad request: {field}:") and "\n" not in response.text
    assert review.get("/api/predictions", params=query).json()["detail"].startswith(field)


def test_overlay_draws_the_map_over_the_kept_image(review, weld_image):
    plain = Image.open(io.BytesIO(review.get("/predictions/1/image.png").content))
    drawn = Image.open(io.BytesIO(review.get("/predictions/1/overlay.png").content))
    source = Image.open(io.BytesIO(weld_image))
    assert plain.size == drawn.size and max(plain.size) <= 384
    assert plain.size[0] / plain.size[1] == pytest.approx(source.size[0] / source.size[1], 0.02)
    difference = np.abs(np.asarray(drawn, float) - np.asarray(plain.convert("RGB"), float)).sum(2)
    height, width = difference.shape
    # Coloured where the map is hot (top-left quarter), the part itself elsewhere.
    assert difference[: height // 4 - 4, : width // 4 - 4].mean() > 50
    assert difference[height // 2 :, width // 2 :].mean() < 1
    assert review.get("/predictions/2/overlay.png").status_code == 404  # nothing kept
    assert review.get("/predictions/99/overlay.png").status_code == 404
    assert review.get("/predictions/0/overlay.png").status_code == 422


def test_verdicts_store_who_and_when_and_count_per_day(review, log_path):
    def verdicts_counted(kind: str) -> float:
        line = next((x for x in review.get("/metrics/").text.splitlines() if x.startswith(
            "anomalyops_verdicts_total{") and f'verdict="{kind}"' in x), "x 0")  # fmt: skip
        return float(line.rsplit(" ", 1)[1])

    counted = verdicts_counted("false_alarm")
    stored = review.post(
        "/api/predictions/1/verdict", json={"verdict": "false_alarm", "reviewer": "ana"}
    )
    assert stored.status_code == 200 and stored.json()["reviewer"] == "ana"
    assert verdicts_counted("false_alarm") == counted + 1  # Prometheus sees it too
    # The ingress's header names the reviewer and wins over the page's field.
    stored = review.post(
        "/api/predictions/2/verdict",
        json={"verdict": "confirmed_defect", "reviewer": "someone"},
        headers={"X-Forwarded-User": "ben@plant"},
    )
    assert stored.json()["reviewer"] == "ben@plant"
    with PredictionLog(log_path) as log:
        row = log.get(1)
        assert (row["verdict"], row["reviewer"]) == ("false_alarm", "ana")
        assert row["verdict_time"].startswith(datetime.now(UTC).date().isoformat())
        assert log.get(2)["reviewer"] == "ben@plant"
    [today] = review.get("/api/summary").json()
    assert today == {
        "day": datetime.now(UTC).date().isoformat(), "flagged": 3, "reviewed": 2,
        "false_alarms": 1, "confirmed": 1, "share": 0.5,
    }  # fmt: skip
    assert review.get("/api/summary", params={"line": "line-2"}).json()[0]["share"] == 0.0
    page = review.get("/", headers={"X-Forwarded-User": "ben@plant"}).text
    assert 'id="signed-in">ben@plant<' in page and "false alarm · ana" in page


@pytest.mark.parametrize(
    ("body", "headers", "status", "says"),
    [
        ({"verdict": "false_alarm"}, {}, 422, "reviewer: give your name"),
        ({"verdict": "maybe", "reviewer": "ana"}, {}, 422, "verdict:"),
        ({"verdict": "false_alarm", "reviewer": "a" * 101}, {}, 422, "reviewer:"),
        ({"verdict": "false_alarm", "reviewer": "ana", "note": "n" * 1001}, {}, 422, "note:"),
    ],
)
def test_bad_verdicts_are_refused_and_store_nothing(review, log_path, body, headers, status, says):
    response = review.post("/api/predictions/1/verdict", json=body, headers=headers)
    assert response.status_code == status and response.json()["detail"].startswith(says)
    with PredictionLog(log_path) as log:
        assert log.get(1)["verdict"] is None


def test_unknown_prediction_and_form_posts_are_refused(review):
    response = review.post("/api/predictions/99/verdict", json={"verdict": "false_alarm",
                                                                "reviewer": "ana"})  # fmt: skip
    assert response.status_code == 404 and "no prediction with id 99" in response.json()["detail"]
    # A cross-site form can send text/plain without asking: only JSON is taken.
    body = json.dumps({"verdict": "false_alarm", "reviewer": "ana"})
    form = review.post("/api/predictions/1/verdict", content=body,
                       headers={"Content-Type": "text/plain"})  # fmt: skip
    assert form.status_code == 415
    huge = review.post("/api/predictions/1/verdict", content=b"{" + b" " * 100_000 + b"}",
                       headers={"Content-Type": "application/json"})  # fmt: skip
    assert huge.status_code == 413
    assert review.get("/api/predictions/1").json()["verdict"] is None


def test_histogram_draws_logged_scores_against_the_served_versions_reference(
    log_path, tmp_path, web_server, weld_export
):
    repository = tmp_path / "repository"
    statistics = {n: [1.0] for n in ("brightness", "contrast", "sharpness")}
    served = add_model(repository, "weld", weld_export, version=1)  # the real repository
    Reference([3.0, 4.0, 5.0], statistics).save(served)
    (repository / "weld" / "2").mkdir()  # a newer folder that is not served
    Reference([1.0, 2.0], statistics).save(repository / "weld" / "2")
    app = create_app(log_path, References(repository=repository), variant="weld")
    with web_server(app) as url:
        page = httpx.get(url + "/").text
    assert "4 logged scores" in page and "3 reference scores" in page
    assert str(served / "reference.json") in page
    assert page.count('class="logged"') == 30 and 'class="threshold"' in page
    with web_server(create_app(log_path)) as url:
        assert "no reference (no --reference given)" in httpx.get(url + "/").text


def test_a_bad_variant_or_a_missing_log_fails_at_start(log_path, tmp_path):
    from anomalyops.serving.contract.names import InvalidNameError

    with pytest.raises(InvalidNameError):
        create_app(log_path, variant="../weld")
    with pytest.raises(FileNotFoundError, match="no prediction log"):
        create_app(tmp_path / "typo.db")


def test_a_wrong_reference_path_fails_at_start(tmp_path):
    with pytest.raises(ReferenceError, match="missing"):
        References(reference=tmp_path / "nowhere.json")


def test_links_follow_the_prefix_the_ingress_strips(log_path, web_server):
    with web_server(create_app(log_path), root_path="/review") as url:
        page = httpx.get(url + "/").text  # the ingress took /review off the path
    assert '<base href="/review/">' in page and 'href="static/review.css"' in page
