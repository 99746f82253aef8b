"""Detectors by name, and loading a saved one whatever its kind."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file

from anomalyops.components.detectors.base import CONFIG_FILE, WEIGHTS_FILE, Detector, Prediction
from anomalyops.components.detectors.padim.detector import PaDiM
from anomalyops.components.detectors.patchcore.detector import PatchCore

DETECTORS: dict[str, type[Detector]] = {cls.kind: cls for cls in (PatchCore, PaDiM)}

__all__ = ["DETECTORS", "Detector", "PaDiM", "PatchCore", "Prediction", "create", "load_detector"]


def create(kind: str, weights: str = "imagenet", **settings) -> Detector:
    """A new, unfitted detector of `kind` with `settings` overriding its defaults."""
    if kind not in DETECTORS:
        raise ValueError(f"unknown detector {kind!r}; known: {', '.join(sorted(DETECTORS))}")
    cls = DETECTORS[kind]
    return cls(cls.configure(**settings), weights=weights)


def load_detector(directory: str | Path) -> Detector:
    """A saved detector, back exactly as it was saved."""
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing; is {directory} a saved detector?")
    try:
        description = json.loads(config_path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{config_path}: not valid JSON ({error})") from None
    kind = description.get("kind")
    if kind not in DETECTORS:
        raise ValueError(f"{config_path}: unknown detector kind {kind!r}")
    return DETECTORS[kind].restore(description, load_file(weights_path))
