"""EfficientAD's pure torch model: what gets exported (Batzner et al., WACV 2024).

Teacher, student and autoencoder sit in one module with the statistics that turn their
outputs into a map (teacher channel mean/std, the two maps' quantiles), so the exported
graph takes raw pixels and gives the finished anomaly map and score.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from anomalyops.components.detectors.anomaly_map import AnomalyMap
from anomalyops.components.detectors.backbones import Backbone
from anomalyops.components.detectors.base import InferenceOutput

# The PDN's output stride: the teacher's features are taken at stride 8.
PDN_STRIDE = 8
BOTTLENECK = 64  # the autoencoder's code channels, as in the paper


class PDN(nn.Module):
    """The paper's small patch description network (PDN-S), first convolution strided.

    Four convolutions (kernels 4, 4, 3, 4) with 2×2 average pools after the first two,
    paddings as the paper's (3, 1, 3, 1, 1, 0). The paper's PDN outputs at stride 4; a
    stride of 2 on the first convolution puts it at the teacher's stride 8 (an input of
    S×S, S a multiple of 8, gives S/8 × S/8) and widens the receptive field to 62 px.
    """

    def __init__(self, out_channels: int, widths: tuple[int, int, int]) -> None:
        super().__init__()
        first, second, third = widths
        self.layers = nn.Sequential(
            nn.Conv2d(3, first, 4, stride=2, padding=3),
            nn.ReLU(inplace=True),
            nn.AvgPool2d(2, stride=2, padding=1),
            nn.Conv2d(first, second, 4, padding=3),
            nn.ReLU(inplace=True),
            nn.AvgPool2d(2, stride=2, padding=1),
            nn.Conv2d(second, third, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(third, out_channels, 4),
        )

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.layers(pixels)


class AutoEncoder(nn.Module):
    """The paper's autoencoder: strided convolutions down to a 1×1 code of 64 channels,
    bilinear upsampling and convolutions back up to C channels at the teacher's size.

    Encoder: five 4×4 stride-2 convolutions (32, 32, 64, 64, 64 channels), then one whose
    kernel spans what is left (8×8 at 256²) down to 1×1. Decoder: upsampling to 1/8, 1/4,
    1/2 and the full output size, each followed by a 3×3 convolution, ReLU and dropout
    0.2 (the paper's 4×4 ones with padding 2 add a pixel per stage; 3×3 keeps the sizes
    exact for any input), then a 3×3 convolution to C channels.
    """

    def __init__(
        self, input_size: tuple[int, int], output_size: tuple[int, int], out_channels: int
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        height, width, channels = *input_size, 3
        for width_out in (32, 32, 64, 64, 64):
            layers += [nn.Conv2d(channels, width_out, 4, stride=2, padding=1), nn.ReLU(True)]
            height, width, channels = height // 2, width // 2, width_out
        layers.append(nn.Conv2d(channels, BOTTLENECK, (height, width)))
        self.encoder = nn.Sequential(*layers)
        out_h, out_w = output_size
        self.sizes = [(max(1, out_h // f), max(1, out_w // f)) for f in (8, 4, 2, 1)]
        self.stages = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(BOTTLENECK, BOTTLENECK, 3, padding=1), nn.ReLU(True), nn.Dropout(0.2)
            )
            for _ in self.sizes
        )
        self.head = nn.Conv2d(BOTTLENECK, out_channels, 3, padding=1)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.encoder(pixels)
        for size, stage in zip(self.sizes, self.stages, strict=True):
            x = stage(F.interpolate(x, size=size, mode="bilinear", align_corners=False))
        return self.head(x)


class EfficientADModel(nn.Module):
    """Teacher (frozen backbone features), student PDN (2·C outputs) and autoencoder.

    Local map: where the student's first C channels miss the teacher (structural
    defects). Global map: where its second C channels miss the autoencoder, which can
    only reproduce what is usual across the whole image (logical defects). Each map is
    mapped so that its 0.9 quantile on held-out good images becomes 0 and its 0.995
    quantile 0.1, then the two are averaged.
    """

    def __init__(
        self,
        teacher: Backbone,
        input_size: tuple[int, int],
        sigma: float,
        widths: tuple[int, int, int],
    ) -> None:
        super().__init__()
        height, width = input_size
        if height % PDN_STRIDE or width % PDN_STRIDE or min(height, width) < 32:
            raise ValueError(
                f"efficientad needs an input_size of multiples of {PDN_STRIDE}, at least 32, "
                f"got {tuple(input_size)}"
            )
        self.teacher = teacher
        self.channels = sum(teacher.channels)
        self.feature_size = (height // PDN_STRIDE, width // PDN_STRIDE)
        self.student = PDN(2 * self.channels, widths)
        self.autoencoder = AutoEncoder(input_size, self.feature_size, self.channels)
        self.anomaly_map = AnomalyMap(input_size, sigma)
        shape = (1, self.channels, 1, 1)
        self.register_buffer("teacher_mean", torch.zeros(shape))
        self.register_buffer("teacher_std", torch.ones(shape))
        # Rows: local, global; columns: the 0.9 and 0.995 quantiles on held-out images.
        self.register_buffer("quantiles", torch.tensor([[0.0, 1.0], [0.0, 1.0]]))

    @property
    def backbone(self) -> Backbone:
        """The teacher: what Detector reports as its backbone."""
        return self.teacher

    def pixels(self, images: torch.Tensor) -> torch.Tensor:
        """N×H×W×3 images (uint8, or float in 0-255) → what the teacher's first layer sees."""
        x = images.permute(0, 3, 1, 2).float()
        if self.teacher.standardise:
            x = Backbone.standardise_intensity(x)
        return (x - self.teacher.mean) / self.teacher.std

    def raw_teacher(self, images: torch.Tensor) -> torch.Tensor:
        """N×C×h×w backbone features at stride 8 (stride-16 ones upsampled and stacked)."""
        features = self.teacher(images)
        features = [features[0]] + [
            F.interpolate(f, size=self.feature_size, mode="bilinear", align_corners=False)
            for f in features[1:]
        ]
        return torch.cat(features, dim=1)

    def teacher_features(self, images: torch.Tensor) -> torch.Tensor:
        """The teacher's output, each channel standardised on the training images."""
        return (self.raw_teacher(images) - self.teacher_mean) / self.teacher_std

    def maps(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw local and global maps, each N×1×h×w."""
        pixels = self.pixels(images)
        teacher = self.teacher_features(images)
        student = self.student(pixels)
        autoencoder = self.autoencoder(pixels)
        local = (teacher - student[:, : self.channels]).square().mean(1, keepdim=True)
        broad = (autoencoder - student[:, self.channels :]).square().mean(1, keepdim=True)
        return local, broad

    def normalise(self, raw: torch.Tensor, which: int) -> torch.Tensor:
        low, high = self.quantiles[which, 0], self.quantiles[which, 1]
        return 0.1 * (raw - low) / (high - low)

    def forward(self, images: torch.Tensor) -> InferenceOutput:
        local, broad = self.maps(images)
        combined = 0.5 * self.normalise(local, 0) + 0.5 * self.normalise(broad, 1)
        return InferenceOutput(self.anomaly_map(combined), combined.amax(dim=(1, 2, 3)))
