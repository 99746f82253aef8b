"""Autoencoder training on backbone features cached once per fit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

import numpy as np
import torch

from anomalyops.components.detectors.autoencoder.torch_model import (
    AutoencoderModel,
    FeatureAutoencoder,
)
from anomalyops.components.detectors.backbones import Backbone
from anomalyops.components.detectors.trainer import (
    LearnedConfig,
    LearnedDetector,
    Trainer,
    extract,
    validation_split,
)


@dataclass
class AutoencoderConfig(LearnedConfig):
    """Feature-reconstruction settings.

    Set by short validation runs (held-out train/good and pasted defects) on a loaded
    machine. The 2026-12-01 benchmark sitting (results/detector-families.md) measured
    one fit at 70-86 s here for 37-213 images.
    """

    strides: tuple[int, ...] = (8, 16)
    hidden: int = 256
    code: int = 32  # the bottleneck's channels
    slots: int = 128  # memory prototypes
    shrink: float = 2.5  # memory weights below shrink / slots are zeroed
    entropy_weight: float = 2e-4  # MemAE's push towards few slots per position
    steps: int = 1000
    learning_rate: float = 1e-3


def entropy(weights: torch.Tensor) -> torch.Tensor:
    """Mean entropy of the memory weights per position."""
    return -(weights * (weights + 1e-12).log()).sum(-1).mean()


class Autoencoder(LearnedDetector):
    """Good images' features rebuilt through a narrow, memory-bound code; a defect's
    features are not among what the memory can mix, so they come back wrong."""

    kind = "autoencoder"
    config_class = AutoencoderConfig
    config: AutoencoderConfig
    model: AutoencoderModel

    def build_model(self, weights: str) -> AutoencoderModel:
        config = self.config
        backbone = Backbone(config.backbone, config.strides, weights, config.standardise)
        return AutoencoderModel(backbone, self._new_autoencoder(sum(backbone.channels)),
                                config.input_size, config.sigma)  # fmt: skip

    def _new_autoencoder(self, channels: int) -> FeatureAutoencoder:
        """A seeded fresh start: a refit on fewer images (cross-fitting) forgets the rest."""
        config = self.config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            return FeatureAutoencoder(channels, config.hidden, config.code, config.slots,
                                      config.shrink)  # fmt: skip

    def fit(self, images: np.ndarray, progress: bool = True) -> Self:
        self.check_images(images)
        config, model = self.config, self.model
        train, held = validation_split(len(images), seed=config.seed)
        (features,) = extract(model.embed, images, self.device, "extract features", progress)
        flat = features[torch.from_numpy(train).to(self.device)].flatten(0, 2)
        model.mean, model.std = flat.mean(0), flat.std(0).clamp_min(1e-6)
        features = model.standardise(features)
        model.autoencoder = self._new_autoencoder(features.shape[-1]).to(self.device)
        train_rows = torch.from_numpy(train).to(self.device)

        def step(indices: torch.Tensor) -> torch.Tensor:
            batch = features[train_rows[indices.to(self.device)]]
            rebuilt, weights = model.autoencoder(batch)
            return model.error(batch, rebuilt).mean() + config.entropy_weight * entropy(weights)

        def validate() -> float:
            losses = []
            for chunk in torch.from_numpy(held).to(self.device).split(64):
                rebuilt, _ = model.autoencoder(features[chunk])
                losses.append(float(model.error(features[chunk], rebuilt).mean((1, 2)).sum()))
            return sum(losses) / len(held)

        self.log = Trainer(config.train_settings(), "train autoencoder", progress).run(
            [model.autoencoder], len(train), step, validate if len(held) else None
        )
        model.autoencoder.requires_grad_(False)
        self.fitted = True
        return self
