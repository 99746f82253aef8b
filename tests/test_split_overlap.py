"""tests/benchmarks/split_overlap.py finds a test image that is a band of a train image's
rows, and nothing where there is none: what the weld finding in the README rests on."""

import numpy as np
from benchmark_script import load_benchmark
from PIL import Image


def test_a_crop_is_found_and_another_picture_is_not(tmp_path):
    overlap = load_benchmark("split_overlap")
    rng = np.random.default_rng(0)
    taken = rng.integers(0, 256, (60, 40), dtype=np.uint8)
    other = rng.integers(0, 256, (30, 40), dtype=np.uint8)
    for split, images in {
        "train/good": {"4-a.png": taken, "6-b.png": other[::-1]},
        "test/good": {"4-a_row7.png": taken[7:37], "6-c.png": other, "6-wide.png": taken[:, :30]},
        "test/crack": {"7-d.png": other},
    }.items():
        (tmp_path / split).mkdir(parents=True)
        for name, pixels in images.items():
            Image.fromarray(pixels).save(tmp_path / split / name)

    found = overlap.overlap(tmp_path)

    assert found["identical_pairs"] == [("4-a_row7.png", "4-a.png")]
    gaps = {c["test"]: c["gap"] for c in found["closest"]}
    assert gaps["6-c.png"] > 10 and gaps["6-wide.png"] is None
    assert found["sessions"] == {
        "train_good": {"4": 1, "6": 1},
        "test_good": {"4": 1, "6": 2},
        "test_defective": {"7": 1},
    }
