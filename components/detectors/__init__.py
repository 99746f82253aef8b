"""Detectors by name, and loading a saved one whatever its kind."""

from __future__ import annotations

from pathlib import Path

from anomalyops.components.detectors.autoencoder.detector import Autoencoder
from anomalyops.components.detectors.base import CONFIG_FILE, Detector, Prediction, read_saved
from anomalyops.components.detectors.cflow.detector import CFlow
from anomalyops.components.detectors.efficientad.detector import EfficientAD
from anomalyops.components.detectors.padim.detector import PaDiM
from anomalyops.components.detectors.patchcore.detector import PatchCore
from anomalyops.components.detectors.stpm.detector import STPM
from anomalyops.components.json_files import ModelFileError

DETECTORS: dict[str, type[Detector]] = {
    cls.kind: cls for cls in (PatchCore, PaDiM, STPM, EfficientAD, CFlow, Autoencoder)
}

__all__ = [
    "DETECTORS",
    "STPM",
    "Autoencoder",
    "CFlow",
    "Detector",
    "EfficientAD",
    "PaDiM",
    "PatchCore",
    "Prediction",
    "create",
    "load_detector",
]


def create(kind: str, weights: str = "imagenet", **settings) -> Detector:
    """A new, unfitted detector of `kind` with `settings` overriding its defaults."""
    if kind not in DETECTORS:
        raise ValueError(f"unknown detector {kind!r}; known: {', '.join(sorted(DETECTORS))}")
    cls = DETECTORS[kind]
    return cls(cls.configure(**settings), weights=weights)


def load_detector(directory: str | Path) -> Detector:
    """A saved detector, back exactly as it was saved."""
    description, state = read_saved(directory)
    kind, where = description["kind"], Path(directory) / CONFIG_FILE
    if kind not in DETECTORS:
        raise ModelFileError(f"{where}: unknown detector kind {kind!r}")
    try:
        return DETECTORS[kind].restore(description, state)
    except (TypeError, ValueError, KeyError, AttributeError, RuntimeError) as error:
        # Settings that cannot build the saved model (a size as text, an unknown backbone).
        raise ModelFileError(f"{where}: its settings do not rebuild a {kind} "
                             f"({type(error).__name__}: {str(error)[:200]})") from None  # fmt: skip
