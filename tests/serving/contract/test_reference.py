"""Training-time reference and image statistics."""

from __future__ import annotations

import json

import numpy as np
import pytest

from anomalyops.serving.contract.reference import Reference, ReferenceError, load_reference
from anomalyops.serving.images.statistics import image_statistics


def test_statistics_see_black_blurred_and_sharp_frames(rng):
    noise = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    black = np.zeros((64, 64, 3), np.uint8)
    stats, dark = image_statistics(noise), image_statistics(black)
    assert 100 < stats["brightness"] < 155 and stats["contrast"] > 30
    assert dark == {"brightness": 0.0, "contrast": 0.0, "sharpness": 0.0}
    blurred = np.repeat(np.repeat(noise[::8, ::8], 8, axis=0), 8, axis=1)
    assert image_statistics(blurred)["sharpness"] < stats["sharpness"] / 4


def test_reference_round_trip_and_bounds(tmp_path, rng):
    frames = [rng.integers(80, 180, (32, 32), dtype=np.uint8) for _ in range(5)]
    reference = Reference.measure(np.array([1.0, 2.0, 3.0]), [image_statistics(f) for f in frames])
    reference.save(tmp_path)
    loaded = load_reference(tmp_path)
    assert loaded == reference
    low, high = loaded.bounds("brightness")
    brightness = loaded.statistics["brightness"]
    assert low < min(brightness) and high > max(brightness) and low > 0 and high < 255
    assert loaded.bounds("sharpness")[0] >= 0


def test_malformed_reference_names_file_and_field(tmp_path):
    with pytest.raises(ReferenceError, match="missing"):
        load_reference(tmp_path)
    (tmp_path / "reference.json").write_text(json.dumps({"scores": "x", "statistics": {}}))
    with pytest.raises(ReferenceError, match=r"reference\.json: field 'scores'"):
        load_reference(tmp_path)
    (tmp_path / "reference.json").write_text(json.dumps({"scores": [1], "statistics": {}}))
    with pytest.raises(ReferenceError, match="statistics"):
        load_reference(tmp_path)


GOOD_STATISTICS = {"brightness": [90.0, 120.0], "contrast": [20.0, 30.0], "sharpness": [5.0, 9.0]}


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ("garbage", "not readable JSON"),
        ("[1, 2]", "expected a JSON object, got list"),
        ("[" * 100000 + "]" * 100000, "RecursionError"),
        ('{"scores": [' + "9" * 5000 + "]}", "not readable JSON"),
        (json.dumps({"scores": [1.0]}), "field 'statistics' must be an object"),
        (json.dumps({"scores": [float("nan")], "statistics": GOOD_STATISTICS}),
         "scores holds nan; each must be finite"),
        (json.dumps({"scores": [10**400], "statistics": GOOD_STATISTICS}), "must be finite"),
        (json.dumps({"scores": [1.0], "statistics": GOOD_STATISTICS | {"sharpness": [-2.0]}}),
         "statistics.sharpness holds -2.0; each must be finite and at least 0"),
        (json.dumps({"scores": [1.0], "statistics": GOOD_STATISTICS | {"contrast": [0, 0.0]}}),
         "statistics.contrast are all zero"),
        (json.dumps({"scores": [1.0], "statistics": GOOD_STATISTICS | {"brightness": "x"}}),
         "statistics.brightness must be a list"),
    ],
    ids=["garbage", "list", "deep", "huge-integer", "no-statistics", "nan-score", "huge-score",
         "negative", "zeroed", "not-a-list"],
)  # fmt: skip
def test_damaged_reference_is_refused_at_load_naming_the_file(body, says, tmp_path):
    (tmp_path / "reference.json").write_text(body)
    with pytest.raises(ReferenceError, match=r"reference\.json") as raised:
        load_reference(tmp_path)
    assert says in str(raised.value)


def test_a_sound_reference_loads(tmp_path):
    (tmp_path / "reference.json").write_text(
        json.dumps({"scores": [1.0, 2], "statistics": GOOD_STATISTICS})
    )
    assert load_reference(tmp_path).bounds("brightness")[0] < 90
