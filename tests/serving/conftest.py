"""Serving fixtures: a PatchCore trained and exported on real weld data, a real Triton."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def weld_export(weld, tmp_path_factory):
    """model.onnx + model.json of a small PatchCore fitted on weld train/good."""
    from anomalyops.components.export import export
    from anomalyops.components.train import train

    root = tmp_path_factory.mktemp("weld_model")
    train(weld, root / "trained", "patchcore", {"coreset_ratio": 0.01}, progress=False)
    export(root / "trained", root / "export")
    return root / "export"


@pytest.fixture(scope="session")
def python_repository(weld_export, tmp_path_factory):
    """Two product variants in one python-flavour repository."""
    from anomalyops.serving.repository import build_repository

    repo = tmp_path_factory.mktemp("triton") / "repository"
    return build_repository(repo, {"weld": weld_export, "weld-line2": weld_export}, "python")


@pytest.fixture(scope="session")
def triton(python_repository, triton_server):
    with triton_server(python_repository) as server:
        yield server
