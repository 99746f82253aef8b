"""What every detector is: a torch model (what gets exported) plus fit/predict/save/load.

`InferenceOutput` is the contract between training and serving: the exported graph takes
uint8 N×H×W×3 images and returns exactly these two tensors.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import types
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NamedTuple, Self, Union, get_args, get_origin, get_type_hints

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from anomalyops.components.detectors.backbones import Backbone, get_spec
from anomalyops.components.detectors.device import resolve_device
from anomalyops.components.json_files import SHA256, ModelFileError, read_json
from anomalyops.serving.contract.checksums import file_sha256, verify_sha256

FORMAT_VERSION = 1
CONFIG_FILE = "detector.json"
WEIGHTS_FILE = "detector.safetensors"
CONFIG_SCHEMA = {
    "type": "object",
    "required": ["kind", "config", "weights_sha256", "settings_sha256"],
    "properties": {
        "kind": {"type": "string"},
        "format_version": {"const": FORMAT_VERSION},
        "config": {"type": "object"},
        "weights_sha256": SHA256,
        "settings_sha256": SHA256,
    },
}


class InferenceOutput(NamedTuple):
    anomaly_map: torch.Tensor  # N×1×H×W float32
    score: torch.Tensor  # N float32


@dataclass
class Prediction:
    scores: np.ndarray  # N float32
    maps: np.ndarray  # N×H×W float32


@dataclass
class DetectorConfig:
    """Settings shared by all detectors; each detector extends it with its own."""

    backbone: str = "efficientnet_lite0"
    input_size: tuple[int, int] = (256, 256)
    sigma: float = 4.0
    seed: int = 0
    standardise: bool = False  # per-image intensity standardisation before the backbone
    keep_aspect: bool = False  # images keep their aspect in the input (decode.content_box)


# Backbone inputs (tiles) per forward pass on the CPU: more falls out of the caches and
# runs slower per image (EfficientNet-Lite0 at 256²: 17 ms/tile at 4, 30 ms at 8).
TILES_PER_BATCH = 4


def batches(
    images: np.ndarray, size: int, desc: str, progress: bool, device: torch.device | None = None
):
    """uint8 tensors of at most `size` images (on DEVICE), with a progress bar over images."""
    bar = tqdm(total=len(images), desc=desc, unit="img", disable=not progress)
    for start in range(0, len(images), size):
        chunk = torch.from_numpy(np.ascontiguousarray(images[start : start + size]))
        yield chunk if device is None else chunk.to(device)
        bar.update(len(chunk))
    bar.close()


def load_state(module: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """load_state_dict that first resizes buffers whose size depends on the data (banks)."""
    for name, tensor in state.items():
        owner_name, _, attr = name.rpartition(".")
        owner = module.get_submodule(owner_name)
        if attr in owner._buffers and owner._buffers[attr].shape != tensor.shape:
            owner.register_buffer(attr, torch.empty_like(tensor))
    module.load_state_dict(state)


def settings_sha256(description: dict[str, Any]) -> str:
    """sha256 of detector.json's content but this field: settings edited by hand show."""
    body = {k: v for k, v in description.items() if k != "settings_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def read_saved(directory: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """detector.json (schema-checked) and the weights it vouches for (sha256, finite).

    Every fault (missing file, wrong JSON shape, truncated or altered weights, NaN in a
    bank) is a ModelFileError naming the file, raised before any torch model is built.
    """
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    for path in (config_path, weights_path):
        if not path.exists():
            raise ModelFileError(f"{path}: missing; is {directory} a saved detector?")
        if not path.is_file():  # a folder, or a link to /dev/zero: never read it
            raise ModelFileError(f"{path}: not a regular file")
    description = read_json(config_path, CONFIG_SCHEMA)
    if settings_sha256(description) != description["settings_sha256"]:
        raise ModelFileError(f"{config_path}: settings do not match its settings_sha256; "
                             "the file was edited or damaged after it was saved")  # fmt: skip
    try:
        verify_sha256(weights_path, description["weights_sha256"], config_path)
        state = load_file(weights_path)
    except (ValueError, SafetensorError, OSError) as error:
        raise ModelFileError(str(error) if str(weights_path) in str(error)
                             else f"{weights_path}: {error}") from None  # fmt: skip
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ModelFileError(f"{weights_path}: tensor {name} holds NaN or infinite values")
    return description, state


def _fits(value: Any, hint: Any) -> bool:
    """VALUE (as JSON gives it: lists for tuples) is of type HINT; finite where a number."""
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        return any(_fits(value, arg) for arg in args)
    if origin is tuple:
        if not isinstance(value, tuple | list):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return len(value) > 0 and all(_fits(v, args[0]) for v in value)
        return len(value) == len(args) and all(map(_fits, value, args))
    if hint is type(None) or hint is bool or hint is str:
        return isinstance(value, hint)
    if hint in (int, float):
        numeric = isinstance(value, int if hint is int else int | float)
        return numeric and not isinstance(value, bool) and math.isfinite(value)
    return True


class Detector(ABC):
    """A detector learnt from good images only: fit, predict, save, load."""

    kind: ClassVar[str]
    config_class: ClassVar[type[DetectorConfig]]

    def __init__(self, config: DetectorConfig | None = None, weights: str = "imagenet") -> None:
        self.config = config or self.config_class()
        self.model = self.build_model(weights)
        self.model.eval()
        self.fitted = False
        self.device = torch.device("cpu")

    def to(self, device: str | torch.device) -> Self:
        """Compute on DEVICE (`auto`, `cpu`, `cuda`); saved and exported models stay
        device-free, so where a model was fit never matters where it is served."""
        self.device = resolve_device(device)
        self.model.to(self.device)
        return self

    @classmethod
    def configure(cls, **settings: Any) -> DetectorConfig:
        """The config with `settings` over the defaults; JSON lists become tuples again."""
        fields = {f.name for f in dataclasses.fields(cls.config_class)}
        unknown = set(settings) - fields
        if unknown:
            known = ", ".join(sorted(fields))
            raise ValueError(f"{cls.kind}: unknown settings {sorted(unknown)}; known: {known}")
        hints = get_type_hints(cls.config_class)
        for key, value in settings.items():
            if not _fits(value, hints[key]):
                raise ValueError(f"{cls.kind}: setting {key}={value!r} is not a {hints[key]}")
        return cls.config_class(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()}
        )

    @abstractmethod
    def build_model(self, weights: str) -> nn.Module:
        """The torch model; `weights` goes to the backbone ("imagenet", a path, "random")."""

    @abstractmethod
    def fit(self, images: np.ndarray, progress: bool = True) -> Self:
        """Learn normality from good uint8 N×H×W×3 images of the configured input size."""

    @property
    def backbone(self) -> Backbone:
        return self.model.backbone

    @property
    def batch_size(self) -> int:
        """Images per in-process forward pass: TILES_PER_BATCH tiles, at least one image."""
        grid = getattr(self.model, "grid", None)
        return max(1, TILES_PER_BATCH // (grid.count if grid else 1))

    def check_images(self, images: np.ndarray) -> None:
        expected = (*self.config.input_size, 3)
        if images.ndim != 4 or tuple(images.shape[1:]) != expected or images.dtype != np.uint8:
            raise ValueError(
                f"images must be uint8 N×{expected[0]}×{expected[1]}×3, "
                f"got {images.dtype} {tuple(images.shape)}"
            )

    def infer(self, batch: torch.Tensor) -> InferenceOutput:
        """One batch through the in-process path (may differ from the exported graph)."""
        return self.model(batch)

    @torch.inference_mode()
    def predict(
        self, images: np.ndarray, batch_size: int | None = None, progress: bool = False
    ) -> Prediction:
        """Scores (higher = more anomalous) and anomaly maps at the input size."""
        if not self.fitted:
            raise RuntimeError(f"{self.kind} is not fitted: call fit() or load() first")
        self.check_images(images)
        scores, maps = [], []
        for batch in batches(
            images, batch_size or self.batch_size, "predict", progress, self.device
        ):
            output = self.infer(batch)
            scores.append(output.score.cpu().numpy())
            maps.append(output.anomaly_map[:, 0].cpu().numpy())
        return Prediction(np.concatenate(scores), np.concatenate(maps))

    def cross_fit(
        self, images: np.ndarray, folds: list[np.ndarray], progress: bool = True
    ) -> Prediction:
        """Fit on all IMAGES and return each fold's prediction by a model that never saw it.

        Thresholds then rest on out-of-fold scores of every good image, not on a held-out
        share, and the model keeps every image.
        """
        self.fit(images, progress)
        return self.out_of_fold(images, folds, progress)

    def out_of_fold(
        self,
        images: np.ndarray,
        folds: list[np.ndarray],
        progress: bool = True,
        scored: np.ndarray | None = None,
    ) -> Prediction:
        """Each fold of SCORED (default IMAGES, what fit() just learnt) by a model that
        never saw that fold of IMAGES.

        SCORED may hold k copies of every image (row i + j·n is a copy of image i, such as
        one with a defect pasted on): each fold's model is fitted once and scores them all.
        """
        scored = images if scored is None else scored
        if len(scored) == 0 or len(scored) % len(images):
            raise ValueError(
                f"scored holds {len(scored)} images, not copies of the {len(images)} images"
            )
        self.check_images(scored)
        copies = len(scored) // len(images)
        scores = np.empty(len(scored), np.float32)
        maps = np.empty((len(scored), *self.config.input_size), np.float32)
        for fold in tqdm(folds, desc="cross-fit", unit="fold", disable=not progress):
            rows = (fold[None, :] + len(images) * np.arange(copies)[:, None]).ravel()
            prediction = self.predict_out_of(images, fold, scored[rows])
            scores[rows], maps[rows] = prediction.scores, prediction.maps
        return Prediction(scores, maps)

    def predict_out_of(
        self, images: np.ndarray, fold: np.ndarray, scored: np.ndarray
    ) -> Prediction:
        """SCORED by a model of IMAGES without FOLD: here a copy fit on the rest; a
        detector with a cheaper route that is as honest overrides it."""
        rest = np.setdiff1d(np.arange(len(images)), fold)
        return copy.deepcopy(self).fit(images[rest], progress=False).predict(scored)

    def describe(self) -> dict[str, Any]:
        """Settings and lineage that travel with the saved or exported model."""
        return {
            "kind": self.kind,
            "format_version": FORMAT_VERSION,
            "config": dataclasses.asdict(self.config),
            "backbone_weights": self.backbone.weights,
            "backbone_weights_source": get_spec(self.config.backbone).weights_source,
            "backbone_weights_sha256": self.backbone.weights_sha256,
        }

    def save(self, directory: str | Path) -> Path:
        """Settings as JSON and tensors as safetensors (no pickle)."""
        if not self.fitted:
            raise RuntimeError(f"{self.kind} is not fitted: nothing to save")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        try:
            save_file(state, directory / WEIGHTS_FILE)
        except SafetensorError as error:  # its I/O errors (disk full) are no OSError
            raise OSError(f"{directory / WEIGHTS_FILE}: {error}") from None
        # The checksum travels in detector.json so a damaged or edited bank fails at load.
        description = self.describe() | {"weights_sha256": file_sha256(directory / WEIGHTS_FILE)}
        description["settings_sha256"] = settings_sha256(description)
        (directory / CONFIG_FILE).write_text(json.dumps(description, indent=2))
        return directory

    @classmethod
    def restore(cls, description: dict[str, Any], state: dict[str, torch.Tensor]) -> Self:
        detector = cls(cls.configure(**description["config"]), weights="none")
        load_state(detector.model, state)
        detector.backbone.weights = description.get("backbone_weights")
        detector.backbone.weights_sha256 = description.get("backbone_weights_sha256")
        detector.fitted = True
        return detector
