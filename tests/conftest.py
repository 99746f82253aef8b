"""Shared fixtures: the real data beside the repository, and small decoded splits."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ANOMALYOPS_DATA", REPO.parent / "shared" / "data"))
WELD = DATA / "battery_weld" / "weld"
BOTTLE = DATA / "mvtec_ad" / "bottle"
TILE = DATA / "magnetic_tile" / "tile"
MACARONI = DATA / "visa" / "macaroni1"


def require(path: Path) -> Path:
    if not path.is_dir():
        pytest.skip(f"real data not found at {path} (set ANOMALYOPS_DATA)")
    return path


@pytest.fixture(scope="session")
def weld() -> Path:
    return require(WELD)


@pytest.fixture(scope="session")
def bottle() -> Path:
    return require(BOTTLE)


@pytest.fixture(scope="session")
def macaroni() -> Path:
    return require(MACARONI)


@pytest.fixture(scope="session")
def weld_splits(weld):
    from anomalyops.components.datasets import FolderDataset

    dataset = FolderDataset(weld)
    return dataset.load_train((256, 256), progress=False), dataset.load_test(
        (256, 256), progress=False
    )


@pytest.fixture(scope="session")
def triton_server():
    """`with triton_server(repository) as server:` runs the real bundled Triton on it."""
    from anomalyops.serving.triton import TritonServer, triton_venv

    if not (triton_venv() / "bin" / "python").exists():
        pytest.skip(f"Triton environment {triton_venv()} absent: run `make triton-venv`")
    return TritonServer


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
