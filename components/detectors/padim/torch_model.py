"""PaDiM's pure torch model: what gets exported (Defard et al., ICPR 2021)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from anomalyops.components.detectors.anomaly_map import AnomalyMap
from anomalyops.components.detectors.backbones import Backbone
from anomalyops.components.detectors.base import InferenceOutput


class PaDiMModel(nn.Module):
    """A Gaussian per feature-map position; the score is the Mahalanobis distance."""

    def __init__(
        self,
        backbone: Backbone,
        input_size: tuple[int, int],
        sigma: float,
        n_features: int,
        seed: int,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.anomaly_map = AnomalyMap(input_size, sigma)
        total = sum(backbone.channels)
        n_features = min(n_features, total)
        generator = torch.Generator().manual_seed(seed)
        channels = torch.randperm(total, generator=generator)[:n_features].sort().values
        self.register_buffer("channels", channels)
        self.register_buffer("mean", torch.zeros(0, n_features))
        self.register_buffer("inv_covariance", torch.zeros(0, n_features, n_features))

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 N×H×W×3 → N×d×h×w: all layers at the finest resolution, channel subset."""
        features = self.backbone(images)
        size = features[0].shape[-2:]
        features = [features[0]] + [
            F.interpolate(f, size=size, mode="nearest") for f in features[1:]
        ]
        return torch.cat(features, dim=1).index_select(1, self.channels)

    def forward(self, images: torch.Tensor) -> InferenceOutput:
        embedding = self.embed(images)
        n, d, h, w = embedding.shape
        # Position-major and contiguous: bmm on the strided view is ten times slower.
        positions = embedding.reshape(n, d, h * w).permute(2, 0, 1).contiguous()
        delta = positions - self.mean.unsqueeze(1)
        projected = torch.bmm(delta, self.inv_covariance)  # P×N×d
        squared = (projected * delta).sum(-1).clamp_min(0)  # P×N
        patch_scores = squared.sqrt().T.reshape(n, 1, h, w)
        return InferenceOutput(self.anomaly_map(patch_scores), patch_scores.amax(dim=(1, 2, 3)))
