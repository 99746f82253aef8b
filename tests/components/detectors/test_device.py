"""Device choice: auto falls back to the CPU here, a missing GPU is a clear error."""

import numpy as np
import pytest
import torch

from anomalyops.components.detectors import create
from anomalyops.components.detectors.device import DeviceUnavailableError, resolve_device


def test_auto_and_cpu_resolve_here():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")


def test_cuda_is_used_where_present_and_refused_clearly_where_not():
    if torch.cuda.is_available():
        assert resolve_device("cuda").type == "cuda"
        return
    with pytest.raises(DeviceUnavailableError, match="no CUDA GPU"):
        resolve_device("cuda")


def test_unknown_device_is_refused():
    with pytest.raises(ValueError, match="auto, cpu, cuda"):
        resolve_device("tpu")
    with pytest.raises(ValueError, match="auto, cpu, cuda"):
        resolve_device("cuda:x")


def test_detector_on_a_device_scores_and_saves_device_free(weld_splits, tmp_path):
    images = weld_splits[0].images[:6]
    detector = create("padim", weights="random", input_size=(64, 64))
    small = np.stack([img[::4, ::4] for img in images])
    detector.to("auto").fit(small, progress=False)
    assert detector.model.mean.device.type == detector.device.type
    scores = detector.predict(small).scores
    detector.save(tmp_path / "m")
    from anomalyops.components.detectors import load_detector

    again = load_detector(tmp_path / "m")
    assert again.device == torch.device("cpu")
    np.testing.assert_allclose(again.predict(small).scores, scores, rtol=1e-4)
