"""Shared fixtures: real data (weld ships in tests/data; the larger sets beside the
repository in ../shared/data), and small decoded splits."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ANOMALYOPS_DATA", REPO.parent / "shared" / "data"))
WELD = REPO / "tests" / "data" / "weld"  # shipped: weld tests never skip


def require(path: Path) -> Path:
    if not path.is_dir():
        pytest.skip(f"real data not found at {path} (set ANOMALYOPS_DATA)")
    return path


@pytest.fixture(scope="session")
def weld() -> Path:
    return require(WELD)


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


CHROMIUM = Path("/usr/bin/chromium")  # Debian's; `make browser` installs it
# No sandbox (CI runs as root); nothing that reaches out of this closed network.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.fixture(scope="session")
def browser():
    """Headless Debian chromium driven by Playwright (its own browser download fails here)."""
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} absent: run `make browser`")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
