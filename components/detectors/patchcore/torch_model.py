"""PatchCore's pure torch model: what gets exported (Roth et al., CVPR 2022)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from anomalyops.components.backbones import Backbone
from anomalyops.components.detectors.anomaly_map import AnomalyMap
from anomalyops.components.detectors.base import InferenceOutput


class PatchCoreModel(nn.Module):
    """Locally aware patch features, nearest-neighbour distance to a memory bank."""

    def __init__(self, backbone: Backbone, input_size: tuple[int, int], sigma: float) -> None:
        super().__init__()
        self.backbone = backbone
        self.anomaly_map = AnomalyMap(input_size, sigma)
        self.feature_dim = sum(backbone.channels)
        self.register_buffer("memory_bank", torch.zeros(0, self.feature_dim))

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 N×H×W×3 → N×D×h×w: 3×3-neighbourhood averages of each layer, stacked."""
        features = [F.avg_pool2d(f, 3, stride=1, padding=1) for f in self.backbone(images)]
        size = features[0].shape[-2:]
        features = [features[0]] + [
            F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in features[1:]
        ]
        return torch.cat(features, dim=1)

    def outputs(self, patch_scores: torch.Tensor) -> InferenceOutput:
        """N×1×h×w patch distances → anomaly map and image score (the largest distance)."""
        return InferenceOutput(self.anomaly_map(patch_scores), patch_scores.amax(dim=(1, 2, 3)))

    def forward(self, images: torch.Tensor) -> InferenceOutput:
        """Nearest-neighbour search as matrix products, so it runs on any ONNX backend."""
        embedding = self.embed(images)
        n, d, h, w = embedding.shape
        patches = embedding.permute(0, 2, 3, 1).reshape(n, h * w, d)
        bank = self.memory_bank
        squared = (
            (patches * patches).sum(-1, keepdim=True)
            - 2 * patches @ bank.T
            + (bank * bank).sum(-1).unsqueeze(0).unsqueeze(0)
        )
        distances = squared.amin(-1).clamp_min(0).sqrt()
        return self.outputs(distances.reshape(n, 1, h, w))
