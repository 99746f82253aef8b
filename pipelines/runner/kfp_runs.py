"""What every pipeline module does with its `build_pipeline`: compile it to KFP YAML, run it
through `kfp.local`, or submit it to a Kubeflow Pipelines endpoint. One copy of each, so
training, retraining and drift cannot drift apart."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from anomalyops.pipelines.cluster_settings import ClusterSettings

Build = Callable[[ClusterSettings | None], Any]  # a module's build_pipeline


def compile_to(build: Build, path: str | Path, settings: ClusterSettings | None) -> Path:
    """Write BUILD(SETTINGS) as KFP YAML (IR) at PATH."""
    from kfp import compiler

    compiler.Compiler().compile(build(settings), str(path))
    return Path(path)


def init_local(pipeline_root: str | Path) -> Path:
    """Point kfp.local at PIPELINE_ROOT, steps in subprocesses of this interpreter."""
    from kfp import local

    # The steps run in this interpreter, which has the package IMAGE would provide.
    warnings.filterwarnings("ignore", message=".*non-Python base image", category=RuntimeWarning)
    # Resources and GPUs shape cluster pods (cluster_settings.py); locally they do nothing.
    warnings.filterwarnings("ignore", message=".*no effect in the current local runner")
    root = Path(pipeline_root).resolve()
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root))
    return root


def submit(
    build: Build,
    arguments: dict,
    host: str,
    settings: ClusterSettings | None = None,
    experiment: str = "anomalyops",
) -> str:
    """Submit BUILD(SETTINGS) to a Kubeflow Pipelines endpoint with kfp.Client; the run id."""
    import kfp

    run = kfp.Client(host=host).create_run_from_pipeline_func(
        build(settings), arguments=arguments, experiment_name=experiment
    )
    return run.run_id
