"""The feature-reconstruction autoencoder's pure torch model: what gets exported.

In the spirit of DFR (Shi et al., "Unsupervised anomaly segmentation via deep feature
reconstruction", Neurocomputing 2021): pretrained features at strides 8 and 16, stacked
at stride 8, are squeezed through a narrow code and rebuilt; a position whose features the
code cannot rebuild is anomalous. Against rebuilding anomalies too (an autoencoder that
generalises), the code is replaced by a sparse mix of learnt prototypes of good features
(MemAE: Gong et al., "Memorizing Normality to Detect Anomaly", ICCV 2019).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from anomalyops.components.detectors.anomaly_map import AnomalyMap
from anomalyops.components.detectors.backbones import Backbone
from anomalyops.components.detectors.base import InferenceOutput

# Attention sharpness: cosine similarities (−1 to 1) over this temperature before the
# softmax, so that at the start some weights clear the shrinkage threshold and learn.
TEMPERATURE = 0.1


class Memory(nn.Module):
    """A code → the attention-weighted sum of SLOTS learnt prototypes, weights below
    SHRINK / SLOTS set to zero (hard shrinkage), so what the slots cannot mix stays out."""

    def __init__(self, slots: int, dim: int, shrink: float) -> None:
        super().__init__()
        bound = dim**-0.5
        self.slots = nn.Parameter(torch.empty(slots, dim).uniform_(-bound, bound))
        self.threshold = shrink / slots

    def attention(self, codes: torch.Tensor) -> torch.Tensor:
        """…×d codes → …×slots sparse weights that sum to one."""
        similarity = F.normalize(codes, dim=-1) @ F.normalize(self.slots, dim=-1).T
        weights = (similarity / TEMPERATURE).softmax(-1)
        shifted = weights - self.threshold
        # MemAE's continuous hard shrinkage: w·relu(w − λ)/(|w − λ| + ε).
        weights = F.relu(shifted) * weights / (shifted.abs() + 1e-12)
        return weights / weights.sum(-1, keepdim=True).clamp_min(1e-12)

    def forward(self, weights: torch.Tensor) -> torch.Tensor:
        return weights @ self.slots


class FeatureAutoencoder(nn.Module):
    """Per position (a 1×1-convolution network, as linear layers on channels-last
    features): CHANNELS to a CODE-wide bottleneck and back, through a memory."""

    def __init__(self, channels: int, hidden: int, code: int, slots: int, shrink: float) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, code)
        )
        self.memory = Memory(slots, code, shrink)
        self.decoder = nn.Sequential(
            nn.Linear(code, hidden), nn.ReLU(), nn.Linear(hidden, channels)
        )

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """…×C features → rebuilt features and the memory weights."""
        weights = self.memory.attention(self.encoder(features))
        return self.decoder(self.memory(weights)), weights


class AutoencoderModel(nn.Module):
    """Backbone features, standardised per channel, rebuilt; the error is the score."""

    def __init__(
        self,
        backbone: Backbone,
        autoencoder: FeatureAutoencoder,
        input_size: tuple[int, int],
        sigma: float,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.autoencoder = autoencoder
        self.anomaly_map = AnomalyMap(input_size, sigma)
        channels = sum(backbone.channels)
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("std", torch.ones(channels))

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 N×H×W×3 → N×h×w×C: 3×3-neighbourhood averages, stacked at the finest
        stride (as PatchCore does), channels last, not yet standardised."""
        features = [F.avg_pool2d(f, 3, stride=1, padding=1) for f in self.backbone(images)]
        size = features[0].shape[-2:]
        features = [features[0]] + [
            F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in features[1:]
        ]
        return torch.cat(features, dim=1).permute(0, 2, 3, 1)

    def standardise(self, features: torch.Tensor) -> torch.Tensor:
        return (features - self.mean) / self.std

    @staticmethod
    def error(features: torch.Tensor, rebuilt: torch.Tensor) -> torch.Tensor:
        """N×h×w×C → N×h×w: the mean squared reconstruction error over channels."""
        return (features - rebuilt).square().mean(-1)

    def forward(self, images: torch.Tensor) -> InferenceOutput:
        features = self.standardise(self.embed(images))
        rebuilt, _ = self.autoencoder(features)
        anomaly_map = self.anomaly_map(self.error(features, rebuilt).unsqueeze(1))
        return InferenceOutput(anomaly_map, anomaly_map.amax(dim=(1, 2, 3)))
