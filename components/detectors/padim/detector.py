"""PaDiM training: per-position mean and regularised inverse covariance."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

import numpy as np
import torch

from anomalyops.components.detectors.backbones import Backbone
from anomalyops.components.detectors.base import Detector, DetectorConfig, batches
from anomalyops.components.detectors.padim.torch_model import PaDiMModel


@dataclass
class PaDiMConfig(DetectorConfig):
    n_features: int = 100
    regularisation: float = 0.01


class PaDiM(Detector):
    kind = "padim"
    config_class = PaDiMConfig
    config: PaDiMConfig
    model: PaDiMModel

    def build_model(self, weights: str) -> PaDiMModel:
        config = self.config
        backbone = Backbone(config.backbone, (4, 8, 16), weights, config.standardise)
        return PaDiMModel(backbone, config.input_size, config.sigma, config.n_features, config.seed)

    @torch.inference_mode()
    def fit(self, images: np.ndarray, progress: bool = True) -> Self:
        self.check_images(images)
        if len(images) < 2:
            raise ValueError("PaDiM needs at least 2 good images to estimate a covariance")
        # Sums of shifted features in float32: shifting by the first batch's mean keeps
        # the covariance free of cancellation without float64's cost.
        shift, total, outer, count = None, 0, 0, 0
        for batch in batches(images, self.batch_size, "extract features", progress, self.device):
            embedding = self.model.embed(batch)
            n, d, h, w = embedding.shape
            x = embedding.reshape(n, d, h * w).permute(2, 0, 1).contiguous()  # P×n×d
            if shift is None:
                shift = x.mean(1, keepdim=True)
            x = x - shift
            total = total + x.sum(1)
            outer = outer + torch.bmm(x.transpose(1, 2), x)
            count += n
        mean = total / count
        covariance = (outer - count * mean.unsqueeze(2) * mean.unsqueeze(1)) / (count - 1)
        covariance += self.config.regularisation * torch.eye(
            covariance.shape[-1], device=covariance.device
        )
        self.model.mean = (mean + shift[:, 0]).contiguous()
        inverse = torch.cholesky_inverse(torch.linalg.cholesky(covariance))
        # Row-major like a loaded tensor, so a saved model scores bit for bit the same.
        self.model.inv_covariance = inverse.contiguous()
        self.fitted = True
        return self
