"""What every pipeline module does with its `build_pipeline`: compile it to KFP YAML, run it
through `kfp.local`, or submit it to a Kubeflow Pipelines endpoint. One copy of each, so
training, retraining and drift cannot drift apart."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
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


@dataclass
class KfpTarget:
    """Where and as whom runs are submitted. Multi-user Kubeflow: `namespace` is the
    profile's namespace and `token_file` holds a bearer token (a projected service
    account token, or the one Kubeflow's auth issues); `service_account` is the account the
    run's steps run as (default: the namespace's pipeline runner)."""

    host: str
    namespace: str | None = None
    token_file: str | None = None
    service_account: str | None = None
    experiment: str = "anomalyops"

    def client(self):
        import kfp

        token = None
        if self.token_file:
            token = Path(self.token_file).read_text().strip()
            if not token:
                raise ValueError(f"--token-file {self.token_file} is empty")
        extra = {"namespace": self.namespace} if self.namespace else {}
        return kfp.Client(host=self.host, existing_token=token, **extra)


def _target(host: str | KfpTarget, experiment: str) -> KfpTarget:
    return host if isinstance(host, KfpTarget) else KfpTarget(host, experiment=experiment)


def submit(
    build: Build,
    arguments: dict,
    host: str | KfpTarget,
    settings: ClusterSettings | None = None,
    experiment: str = "anomalyops",
) -> str:
    """Submit BUILD(SETTINGS) to a Kubeflow Pipelines endpoint with kfp.Client; the run id."""
    target = _target(host, experiment)
    run = target.client().create_run_from_pipeline_func(
        build(settings), arguments=arguments, experiment_name=target.experiment,
        namespace=target.namespace, service_account=target.service_account,
    )  # fmt: skip
    return run.run_id


def check_cron(expression: str) -> str:
    """KFP's cron has six fields, seconds first (robfig/cron, kfp/client/client.py
    create_recurring_run): '0 17 * * * *' is minute 17 of every hour."""
    if len(expression.split()) != 6:
        raise ValueError(f"--schedule {expression!r}: KFP cron takes 6 fields, seconds first, "
                         "e.g. '0 17 * * * *' (minute 17 of every hour)")  # fmt: skip
    return expression


def schedule(
    build: Build,
    arguments: dict,
    target: KfpTarget,
    cron: str,
    name: str,
    settings: ClusterSettings | None = None,
) -> str:
    """A recurring run of BUILD(SETTINGS) on CRON (kfp.Client.create_recurring_run): one
    at a time, no backfill of missed intervals. Returns the recurring run's id."""
    import tempfile

    from kfp import compiler

    client = target.client()
    experiment = client.create_experiment(target.experiment, namespace=target.namespace)
    with tempfile.TemporaryDirectory() as folder:
        package = str(Path(folder) / "pipeline.yaml")
        compiler.Compiler().compile(build(settings), package)
        job = client.create_recurring_run(
            experiment.experiment_id, name, cron_expression=check_cron(cron),
            max_concurrency=1, no_catchup=True, params=arguments,
            pipeline_package_path=package, service_account=target.service_account,
        )  # fmt: skip
    return job.recurring_run_id
