"""The one training loop for detectors that learn (STPM, EfficientAD, CFLOW, autoencoder).

A detector hands it a step function (one batch's loss) and, optionally, a validation
function (a loss on held-out good images). The trainer owns what every such detector
needs the same way: Adam with a step decay, a seeded batch order, a step and a time
budget, early stopping on the validation loss with the best weights restored, a progress
bar that shows the loss, and a checkpoint to resume from.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from anomalyops.components.detectors.base import TILES_PER_BATCH, Detector, DetectorConfig, batches

CHECKPOINT_WEIGHTS = "checkpoint.safetensors"
CHECKPOINT_STATE = "checkpoint.json"


@dataclass(frozen=True)
class TrainSettings:
    """How long and how fast a detector learns; every learned detector's config holds one
    set of these fields (see LearnedConfig) and passes them here."""

    steps: int
    batch_size: int = 8
    learning_rate: float = 1e-4
    weight_decay: float = 1e-5
    decay_at: float = 0.95  # learning rate × 0.1 after this share of the steps
    time_budget_s: float | None = None  # stop early, keep the best weights so far
    validate_every: int = 50  # steps between validation losses (early stopping)
    patience: int = 4  # validations without improvement before stopping
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.validate_every < 1:
            raise ValueError("steps, batch_size and validate_every must be at least 1")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be finite and above 0, got {self.learning_rate}")
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            raise ValueError(f"time_budget_s must be above 0, got {self.time_budget_s}")


@dataclass
class TrainLog:
    """What happened: steps run, why it stopped, the losses seen (for reports and tests)."""

    steps: int = 0
    stopped: str = "steps"  # "steps", "time", "early" (no better validation loss)
    seconds: float = 0.0
    losses: list[float] = field(default_factory=list)  # mean training loss per validation
    validation: list[float] = field(default_factory=list)
    best_step: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class LearnedConfig(DetectorConfig):
    """The training fields of every detector that learns weights (TrainSettings' own)."""

    steps: int = 1000
    batch_size: int = 8
    learning_rate: float = 1e-4
    weight_decay: float = 1e-5
    time_budget_s: float | None = None
    validate_every: int = 50
    patience: int = 4

    def train_settings(self) -> TrainSettings:
        return TrainSettings(
            steps=self.steps,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            weight_decay=self.weight_decay,
            time_budget_s=self.time_budget_s,
            validate_every=self.validate_every,
            patience=self.patience,
            seed=self.seed,
        )


def validation_split(
    count: int, share: float = 0.1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Indices to train on and to validate on: a seeded SHARE (at least one image from 10
    images up, none below: a tiny set keeps every image and trains for the full budget)."""
    order = np.random.default_rng(seed).permutation(count)
    held = round(count * share) if count >= 10 else 0
    return np.sort(order[held:]), np.sort(order[:held])


class LearnedDetector(Detector):
    """A detector fit by the shared trainer."""

    log: TrainLog | None = None  # the last fit's training log (not saved)


class Trainer:
    """Runs `step(batch_indices) -> loss` over the trainable parameters of MODULES."""

    def __init__(
        self,
        settings: TrainSettings,
        desc: str = "train",
        progress: bool = True,
        checkpoint: str | Path | None = None,
    ) -> None:
        self.settings = settings
        self.desc = desc
        self.progress = progress
        self.checkpoint = Path(checkpoint) if checkpoint else None

    def run(
        self,
        modules: Iterable[nn.Module],
        count: int,
        step: Callable[[torch.Tensor], torch.Tensor],
        validate: Callable[[], float] | None = None,
    ) -> TrainLog:
        """Train on batches of indices into COUNT training items; return the log.

        The batch order comes from the seed alone, so two runs on the same device give
        the same weights. With VALIDATE, the weights with the lowest validation loss are
        the ones kept; without it, the last ones.
        """
        settings = self.settings
        modules = list(modules)
        parameters = [p for m in modules for p in m.parameters() if p.requires_grad]
        if not parameters:
            raise ValueError(f"{self.desc}: nothing to train (no parameter requires grad)")
        optimizer = torch.optim.Adam(
            parameters, lr=settings.learning_rate, weight_decay=settings.weight_decay
        )
        schedule = torch.optim.lr_scheduler.MultiStepLR(
            optimizer, [max(1, int(settings.steps * settings.decay_at))], gamma=0.1
        )
        log = TrainLog()
        first = self._resume(modules, optimizer, schedule, log)
        generator = torch.Generator().manual_seed(settings.seed)
        for _ in range(first):  # a resumed run draws the batches an unbroken one would
            torch.randint(count, (min(settings.batch_size, count),), generator=generator)
        best, best_loss, waited, running = None, math.inf, 0, []
        started = time.perf_counter() - log.seconds
        bar = tqdm(total=settings.steps, initial=first, desc=self.desc, unit="step",
                   disable=not self.progress)  # fmt: skip
        for module in modules:
            module.train()
        for number in range(first, settings.steps):
            indices = torch.randint(count, (min(settings.batch_size, count),), generator=generator)
            loss = step(indices)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"{self.desc}: loss became {float(loss)} at step {number + 1}; "
                    "lower learning_rate"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            running.append(float(loss.detach()))
            log.steps = number + 1
            bar.update(1)
            last = log.steps == settings.steps
            if log.steps % settings.validate_every == 0 or last:
                log.losses.append(float(np.mean(running)))
                running = []
                postfix = {"loss": f"{log.losses[-1]:.4g}"}
                if validate is not None:
                    for module in modules:
                        module.eval()
                    with torch.no_grad():
                        value = float(validate())
                    for module in modules:
                        module.train()
                    log.validation.append(value)
                    postfix["val"] = f"{value:.4g}"
                    if value < best_loss:
                        best_loss, waited, log.best_step = value, 0, log.steps
                        best = [_copy_state(m) for m in modules]
                    else:
                        waited += 1
                bar.set_postfix(postfix)
                self._save(modules, optimizer, log, time.perf_counter() - started)
                if validate is not None and waited >= settings.patience:
                    log.stopped = "early"
                    break
            if settings.time_budget_s and time.perf_counter() - started > settings.time_budget_s:
                log.stopped = "time"
                break
        bar.close()
        for module in modules:
            module.eval()
        if best is not None:
            for module, state in zip(modules, best, strict=True):
                module.load_state_dict(state)
        else:
            log.best_step = log.steps
        log.seconds = round(time.perf_counter() - started, 2)
        return log

    def _save(self, modules: list[nn.Module], optimizer: torch.optim.Optimizer,
              log: TrainLog, seconds: float) -> None:  # fmt: skip
        """Weights and optimizer moments as safetensors, the rest as JSON (no pickle)."""
        if self.checkpoint is None:
            return
        self.checkpoint.mkdir(parents=True, exist_ok=True)
        tensors = {f"module{i}.{k}": v.detach().cpu().contiguous()
                   for i, m in enumerate(modules) for k, v in m.state_dict().items()}  # fmt: skip
        for index, state in optimizer.state_dict()["state"].items():
            for key, value in state.items():
                tensors[f"optimizer.{index}.{key}"] = value.detach().cpu().contiguous()
        partial = self.checkpoint / (CHECKPOINT_WEIGHTS + ".partial")
        save_file(tensors, partial)
        partial.replace(self.checkpoint / CHECKPOINT_WEIGHTS)
        state = log.to_dict() | {"seconds": round(seconds, 2), "settings": asdict(self.settings)}
        (self.checkpoint / CHECKPOINT_STATE).write_text(json.dumps(state, indent=2))

    def _resume(self, modules: list[nn.Module], optimizer: torch.optim.Optimizer,
                schedule: torch.optim.lr_scheduler.LRScheduler, log: TrainLog) -> int:  # fmt: skip
        """The step to start from: 0, or where a checkpoint of the same settings stopped."""
        if self.checkpoint is None or not (self.checkpoint / CHECKPOINT_STATE).is_file():
            return 0
        saved = json.loads((self.checkpoint / CHECKPOINT_STATE).read_text())
        if saved.get("settings") != asdict(self.settings):
            raise ValueError(f"{self.checkpoint / CHECKPOINT_STATE}: a checkpoint of other "
                             "training settings; remove it or use another folder")  # fmt: skip
        tensors = load_file(self.checkpoint / CHECKPOINT_WEIGHTS)
        device = next(p for m in modules for p in m.parameters()).device
        for i, module in enumerate(modules):
            prefix = f"module{i}."
            module.load_state_dict(
                {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            )
        state = optimizer.state_dict()
        for key, value in tensors.items():
            if key.startswith("optimizer."):
                _, index, name = key.split(".", 2)
                state["state"].setdefault(int(index), {})[name] = value.to(device)
        optimizer.load_state_dict(state)
        with warnings.catch_warnings():  # the schedule is replayed, not stepped with Adam
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(saved["steps"]):
                schedule.step()
        log.steps, log.seconds = saved["steps"], saved["seconds"]
        log.losses, log.validation = saved["losses"], saved["validation"]
        return saved["steps"]


@torch.no_grad()
def extract(
    module: Callable[[torch.Tensor], list[torch.Tensor] | torch.Tensor],
    images: np.ndarray,
    device: torch.device,
    desc: str = "extract features",
    progress: bool = True,
    batch_size: int = TILES_PER_BATCH,
) -> list[torch.Tensor]:
    """A frozen MODULE's outputs (a tensor or a list of them) for every image, on DEVICE.

    Detectors that learn on fixed features (a teacher's, a backbone's) compute them once
    per fit, not once per step.
    """
    outputs: list[list[torch.Tensor]] = []
    for batch in batches(images, batch_size, desc, progress, device):
        result = module(batch)
        outputs.append([result] if isinstance(result, torch.Tensor) else list(result))
    return [torch.cat(parts) for parts in zip(*outputs, strict=True)]


def _copy_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}
