"""Patch scores to a smooth, image-sized anomaly map (shared by every detector)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class AnomalyMap(nn.Module):
    """Bilinear upsampling to the input size, then a separable Gaussian blur.

    Written with plain conv2d so that it exports to ONNX unchanged.
    """

    def __init__(self, size: tuple[int, int], sigma: float = 4.0) -> None:
        super().__init__()
        self.size = tuple(size)
        radius = max(1, math.ceil(4 * sigma))
        offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
        kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
        kernel = kernel / kernel.sum()
        self.radius = radius
        self.register_buffer("kernel_x", kernel.view(1, 1, 1, -1), persistent=False)
        self.register_buffer("kernel_y", kernel.view(1, 1, -1, 1), persistent=False)

    def forward(self, patch_scores: torch.Tensor) -> torch.Tensor:
        """N×1×h×w patch scores → N×1×H×W anomaly map."""
        x = F.interpolate(patch_scores, size=self.size, mode="bilinear", align_corners=False)
        x = F.pad(x, (self.radius, self.radius, 0, 0), mode="reflect")
        x = F.conv2d(x, self.kernel_x)
        x = F.pad(x, (0, 0, self.radius, self.radius), mode="reflect")
        return F.conv2d(x, self.kernel_y)
