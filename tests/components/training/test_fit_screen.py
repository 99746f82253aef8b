"""`fit` applies the validation step's hard image rules to train/good: a blank or dead
frame there would teach the model, and its unusable-frame bounds, that it is normal."""

import shutil

import numpy as np
import pytest
from PIL import Image

from anomalyops.components.data.datasets import DatasetError
from anomalyops.components.data.manifest import screen
from anomalyops.components.training.train import train
from anomalyops.serving.contract.frame_check import FrameCheck
from anomalyops.serving.contract.reference import load_reference
from anomalyops.serving.images.statistics import image_statistics


@pytest.fixture
def polluted(weld, tmp_path):
    """Weld with an all-black, an all-white and a blank 16-bit frame in train/good."""
    data = tmp_path / "weld"
    shutil.copytree(weld, data)
    good = data / "train" / "good"
    Image.fromarray(np.zeros((256, 400), np.uint8)).save(good / "zz_black.png")
    Image.fromarray(np.full((256, 400), 255, np.uint8)).save(good / "zz_white.png")
    Image.fromarray(np.full((256, 400), 30000, np.uint16)).save(good / "zz_grey16.png")
    return data


def test_screen_passes_every_real_weld_image(weld):
    assert screen(sorted((weld / "train" / "good").glob("*.png"))) == {}


def test_screen_names_each_blank_frame_and_no_real_part(polluted):
    refused = screen(sorted((polluted / "train" / "good").glob("*.png")))
    assert sorted(p.rsplit("/", 1)[1] for p in refused) == [
        "zz_black.png", "zz_grey16.png", "zz_white.png"]  # fmt: skip
    assert all("blank" in why for why in refused.values())


def test_fit_skips_them_and_still_calls_a_black_frame_unusable(polluted, tmp_path):
    result = train(polluted, tmp_path / "model", "patchcore",
                   {"coreset_ratio": 0.01, "input_size": (128, 128)}, progress=False)  # fmt: skip
    assert sum("blank" in s for s in result.summary["skipped"]) == 3
    frames = FrameCheck.from_reference(load_reference(tmp_path / "model"), (128, 128))
    black = np.zeros((128, 128, 3), np.uint8)
    assert frames.problems(image_statistics(black), (256, 400))  # unusable, not 'good'


def test_fit_with_on_error_raise_refuses_them(polluted, tmp_path):
    with pytest.raises(DatasetError, match=r"zz_black\.png: blank"):
        train(polluted, tmp_path / "model", on_error="raise", progress=False)
    assert not (tmp_path / "model").exists()
