"""CFLOW-AD's pure torch model: what gets exported (Gudovskiy et al., WACV 2022)."""

from __future__ import annotations

import torch
from torch import nn

from anomalyops.components.detectors.anomaly_map import AnomalyMap
from anomalyops.components.detectors.backbones import Backbone
from anomalyops.components.detectors.base import InferenceOutput
from anomalyops.components.detectors.cflow.flow import ConditionalFlow


class CFlowModel(nn.Module):
    """A frozen backbone and, per scale, a flow of its feature vectors given the position.

    Per scale the per-dimension log-likelihood map is shifted by that scale's highest
    training value and turned into a likelihood (at most about 1, so float32 neither
    overflows nor loses the good positions' differences), upsampled and summed; the
    anomaly map is the number of scales minus that sum: 0 where every scale finds the
    position as likely as the likeliest training one, up to the number of scales where
    none finds it likely.
    """

    def __init__(self, backbone: Backbone, input_size: tuple[int, int], sigma: float,
                 condition_dims: int, blocks: int, clamp: float, seed: int) -> None:  # fmt: skip
        super().__init__()
        self.backbone = backbone
        self.anomaly_map = AnomalyMap(input_size, sigma)
        with torch.no_grad():  # the feature-map sizes, whatever the backbone's padding
            probe = backbone(torch.zeros(1, *input_size, 3, dtype=torch.uint8))
        generator = torch.Generator().manual_seed(seed)
        self.flows = nn.ModuleList(
            ConditionalFlow(f.shape[1], f.shape[-2:], condition_dims, blocks, clamp, generator)
            for f in probe
        )

    def reset(self, seed: int) -> None:
        """Every flow back to its seeded initial weights (a fit starts from these)."""
        generator = torch.Generator().manual_seed(seed)
        for flow in self.flows:
            flow.reset(generator)

    def forward(self, images: torch.Tensor) -> InferenceOutput:
        likelihood = 0
        for flow, features in zip(self.flows, self.backbone(images), strict=True):
            scale = torch.exp(flow.map(features) - flow.shift)
            likelihood = likelihood + self.anomaly_map(scale)
        anomaly_map = len(self.flows) - likelihood
        return InferenceOutput(anomaly_map, anomaly_map.amax(dim=(1, 2, 3)))
