import pytest
import torch

from anomalyops.components.detectors.backbones import (
    BACKBONES,
    Backbone,
    WeightsUnavailableError,
    get_spec,
)


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_stages_have_declared_strides_and_channels(name):
    backbone = Backbone(name, (4, 8, 16), weights="random")
    features = backbone(torch.zeros(1, 64, 96, 3, dtype=torch.uint8))
    assert [tuple(f.shape[1:]) for f in features] == [
        (c, 64 // s, 96 // s) for c, s in zip(get_spec(name).channels, (4, 8, 16), strict=True)
    ]


@pytest.mark.parametrize("name", ["efficientnet_lite0", "mobilenet_v2"])
def test_packaged_imagenet_weights_load(name):
    pretrained = Backbone(name, (8,), weights="imagenet")
    random = Backbone(name, (8,), weights="random")
    assert pretrained.weights_sha256 and len(pretrained.weights_sha256) == 64
    first = next(pretrained.parameters())
    assert not torch.equal(first, next(random.parameters()))


def test_missing_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(WeightsUnavailableError, match="not found"):
        Backbone("resnet18", (8,), weights=str(tmp_path / "none.pth"))


def test_unknown_backbone_lists_known_ones():
    with pytest.raises(ValueError, match="efficientnet_lite0"):
        get_spec("vgg")


def test_stops_at_deepest_requested_stage():
    assert len(Backbone("efficientnet_lite0", (4,), weights="random").stages) == 1


def test_standardise_removes_lighting_changes():
    image = torch.randint(40, 200, (1, 32, 32, 3), dtype=torch.uint8)
    relit = (image.float() * 0.5 + 70).to(torch.uint8).float()
    standardise = Backbone.standardise_intensity
    assert torch.allclose(standardise(image.float()), standardise(relit), atol=1.5)
    assert not torch.allclose(image.float(), relit, atol=10)
