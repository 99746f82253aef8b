"""CFLOW-AD training: per-scale conditional flows fit to cached backbone feature vectors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

import numpy as np
import torch

from anomalyops.components.detectors.backbones import Backbone
from anomalyops.components.detectors.base import Detector
from anomalyops.components.detectors.cflow.flow import ConditionalFlow
from anomalyops.components.detectors.cflow.torch_model import CFlowModel
from anomalyops.components.detectors.trainer import (
    LearnedConfig,
    Trainer,
    TrainLog,
    extract,
    validation_split,
)

IMAGES_PER_PASS = 16  # held-out and shift passes: bounded memory, whatever the set size


@dataclass
class CFlowConfig(LearnedConfig):
    """CFLOW-AD settings.

    Provisional: set on validation data only (tests/benchmarks/cflow_settings.py:
    held-out train/good and pasted defects) by short runs on a machine loaded by other
    jobs; the benchmark sitting that confirms them is pending.
    """

    strides: tuple[int, ...] = (8, 16)
    condition_dims: int = 128  # the paper's positional encoding width
    coupling_blocks: int = 8
    clamp: float = 1.9  # bound of each block's log-scale (soft, tanh)
    positions: int = 512  # feature vectors per scale drawn per step from the step's images
    steps: int = 1000
    learning_rate: float = 1e-3
    validate_every: int = 100


class CFlow(Detector):
    """Normal feature vectors have a density; a position whose vector the flow finds
    unlikely is anomalous."""

    kind = "cflow"
    config_class = CFlowConfig
    config: CFlowConfig
    model: CFlowModel

    def build_model(self, weights: str) -> CFlowModel:
        config = self.config
        backbone = Backbone(config.backbone, config.strides, weights, config.standardise)
        return CFlowModel(backbone, config.input_size, config.sigma, config.condition_dims,
                          config.coupling_blocks, config.clamp, config.seed)  # fmt: skip

    def fit(self, images: np.ndarray, progress: bool = True) -> Self:
        self.check_images(images)
        if len(images) < 2:
            raise ValueError("CFLOW needs at least 2 good images")
        config, flows = self.config, self.model.flows
        self.model.reset(config.seed)  # a refit copy forgets what the fit before it saw
        features = extract(self.backbone, images, self.device, progress=progress)
        vectors = [f.flatten(2).transpose(1, 2).contiguous() for f in features]  # N×hw×C
        train, held = (torch.from_numpy(part).to(self.device)
                       for part in validation_split(len(images), seed=config.seed))  # fmt: skip
        for flow, x in zip(flows, vectors, strict=True):
            flow.standardise_from(x[train])
        generator = torch.Generator().manual_seed(config.seed)

        def step(indices: torch.Tensor) -> torch.Tensor:
            """Mean per-dimension NLL of random positions of the batch's images, summed
            over scales (each scale's flow learns on its own)."""
            loss = torch.zeros((), device=self.device)
            for flow, x in zip(flows, vectors, strict=True):
                slot = torch.randint(len(indices), (config.positions,), generator=generator)
                where = torch.randint(x.shape[1], (config.positions,), generator=generator)
                image, where = train[indices[slot].to(self.device)], where.to(self.device)
                loss = loss - flow.log_likelihood(x[image, where], flow.condition[where]).mean()
            return loss

        def validate() -> float:
            return -sum(float(_log_likelihoods(flow, x[held]).mean())
                        for flow, x in zip(flows, vectors, strict=True))  # fmt: skip

        trainer = Trainer(config.train_settings(), "train cflow", progress)
        self.log: TrainLog = trainer.run([flows], len(train), step, validate if len(held) else None)
        for flow, x in zip(flows, vectors, strict=True):
            flow.shift = _log_likelihoods(flow, x).max()
        self.fitted = True
        return self


@torch.no_grad()
def _log_likelihoods(flow: ConditionalFlow, vectors: torch.Tensor) -> torch.Tensor:
    """Per-dimension log-likelihoods of every position of N×hw×C vectors, N×hw."""
    return torch.cat([flow.log_likelihood(chunk, flow.condition)
                      for chunk in vectors.split(IMAGES_PER_PASS)])  # fmt: skip
