"""The register step: log a trained detector to MLflow and gate its promotion to champion.

One registered model per product variant; aliases `champion` (what serves) and
`challenger` (the newest candidate). A version is created only after every artifact is
logged and checked. Creating it, gating it (components/registry/promotion.py) and moving
the aliases happen under the variant's lock (components/registry/lock.py); the version
carries `registration=pending` and the aliases it displaces until a final
`registration=complete` tag commits it. A failure part-way rolls back at once (aliases
restored, version deleted); a run killed part-way (kill -9, lost machine) is rolled back
by the next run that takes the lock, or by `--force-unlock`. So no half-registered
version survives the next registration, and the champion is always a committed version.

The exported directory (model.onnx + model.json, the serving contract) is logged under
`export/`. Its model.json must name the version it belongs to, which MLflow assigns only
when the version is created: so the run's `export/model.json` is re-logged with the
version number right after creation and before the version gets any alias; if that
fails the version is deleted like any other half-registration.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from anomalyops.components.registry.client import (
    CHALLENGER,
    CHAMPION,
    EXPORT_PATH,
    RegistryError,
    alias_version,
    mlflow_client,
    with_retries,
)
from anomalyops.components.registry.lock import LEASE_S, VariantLock, error_code, force_unlock
from anomalyops.components.registry.promotion import decide
from anomalyops.serving.contract.names import check_name

T = TypeVar("T")
Retry = Callable[[str, Callable[[], T]], T]
log = logging.getLogger(__name__)

# Version tag: PENDING from creation until its aliases are set, then COMPLETE (the commit).
REGISTRATION, PENDING, COMPLETE = "registration", "pending", "complete"


@dataclass
class Decision:
    variant: str
    version: str
    run_id: str
    promoted: bool
    reason: str
    champion: str  # version that is champion after this registration
    model_uri: str
    tracking_uri: str

    def to_dict(self) -> dict:
        return asdict(self)


def register(
    model_dir: str | Path,
    metrics: dict[str, Any],
    variant: str,
    tracking_uri: str,
    reports: Sequence[str | Path] = (),
    eval_dataset_sha256: str | None = None,
    params: dict[str, Any] | None = None,
    attempts: int = 4,
    backoff: float = 0.5,
    on_stage: Callable[[str], None] | None = None,
    export_dir: str | Path | None = None,
    lease_s: float = LEASE_S,
) -> Decision:
    """Log, register and gate one trained model; returns whether it became champion and why.

    `reports` are files or folders logged under `reports/` (validation, evaluation, maps).
    `export_dir` (model.onnx + model.json) is logged under `export/` with its lineage
    stamped: MLflow run, registered model and version. It is read-only (a KFP input):
    the stamping happens on a scratch copy.
    `on_stage` is called with each stage name (progress, and fault-injection in tests).
    `lease_s` is the variant lock's lease: how soon a later run takes over a dead one's lock.
    """
    check_name(variant)
    model_dir = Path(model_dir)
    if export_dir is not None and not (Path(export_dir) / "model.json").is_file():
        raise RegistryError(f"{export_dir}: no model.json; not an exported model folder")
    if not (model_dir / "detector.json").is_file():
        raise RegistryError(f"{model_dir}: no detector.json; not a trained model folder")
    client = mlflow_client(tracking_uri)
    stage = on_stage or (lambda _name: None)

    def retry(what: str, call: Callable[[], T]) -> T:
        return with_retries(what, call, attempts, backoff)

    numeric = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}
    with tempfile.TemporaryDirectory(prefix="anomalyops-register-") as scratch:
        stamped = None
        if export_dir is not None:
            stamped = Path(scratch) / EXPORT_PATH
            shutil.copytree(export_dir, stamped)
        run, tags = _log_run(client, retry, stage, model_dir, numeric, variant, reports,
                             eval_dataset_sha256, params, stamped)  # fmt: skip
        version, promoted, reason, champion = _create_version(
            client,
            retry,
            stage,
            run,
            tags,
            variant,
            numeric,
            eval_dataset_sha256,
            stamped,
            lease_s,
        )
    stage("done")
    log.info("%s v%s: %s (%s)", variant, version, "champion" if promoted else "challenger", reason)
    return Decision(variant, str(version), run.info.run_id, promoted, reason, str(champion),
                    f"models:/{variant}/{version}", tracking_uri)  # fmt: skip


def _experiment_id(client: Any, name: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name)
    except Exception as error:  # a concurrent registration created it first
        if error_code(error) == "RESOURCE_ALREADY_EXISTS":
            return client.get_experiment_by_name(name).experiment_id
        raise


def _log_run(client: Any, retry: Retry, stage: Callable[[str], None], model_dir: Path,
             numeric: dict, variant: str, reports: Sequence[str | Path],
             eval_hash: str | None, params: dict | None,
             stamped: Path | None) -> tuple[Any, dict[str, str]]:  # fmt: skip
    """A FINISHED run holding the model, reports and export, every artifact checked.

    Returns the run and the tags the version will carry.
    """
    training = json.loads((model_dir / "training.json").read_text())
    experiment = retry("experiment", lambda: _experiment_id(client, f"anomalyops/{variant}"))
    run = retry("create run", lambda: client.create_run(experiment))
    run_id = run.info.run_id
    stage("run_created")
    tags = {
        "variant": variant,
        "dataset_sha256": str(training.get("dataset_sha256", "")),
        "eval_dataset_sha256": eval_hash or "",
    }
    try:
        version_tags = dict(tags)
        if stamped is not None:
            from anomalyops.components.deploy.export import stamp_lineage

            onnx = stamp_lineage(stamped, mlflow_run_id=run_id, registered_model=variant,
                                 model_version=None).onnx  # fmt: skip
            version_tags |= {"export_path": EXPORT_PATH, "onnx_sha256": str(onnx.get("sha256"))}
        flat = _flat_params(model_dir, params)
        retry("log params", lambda: _log_batch(client, run_id, flat, numeric, tags))
        stage("params_logged")
        retry("log model", lambda: client.log_artifacts(run_id, str(model_dir), "model"))
        for report in map(Path, reports):
            if report.is_dir():
                retry(f"log {report}", lambda r=report: client.log_artifacts(
                    run_id, str(r), f"reports/{r.name}"))  # fmt: skip
            elif report.is_file():
                retry(f"log {report}",
                      lambda r=report: client.log_artifact(run_id, str(r), "reports"))  # fmt: skip
            else:
                raise RegistryError(f"report {report} does not exist")
        if stamped is not None:
            retry("log export", lambda: client.log_artifacts(run_id, str(stamped), EXPORT_PATH))
        stage("artifacts_logged")
        _check_artifacts(client, run_id, model_dir, retry)
        if stamped is not None:
            _check_artifacts(client, run_id, stamped, retry, EXPORT_PATH)
        stage("artifacts_checked")
    except BaseException:
        with contextlib.suppress(Exception):
            client.set_terminated(run_id, "FAILED")
        raise
    retry("finish run", lambda: client.set_terminated(run_id, "FINISHED"))
    return run, version_tags | {k: str(v) for k, v in numeric.items()}


def _ensure_model(client: Any, variant: str) -> None:
    try:
        client.create_registered_model(variant, description=f"anomaly detector for {variant}")
    except Exception as error:
        if error_code(error) != "RESOURCE_ALREADY_EXISTS":
            raise


def _find_or_create_version(client: Any, variant: str, run: Any, tags: dict) -> Any:
    # A retry after a lost response must not create a second version for this run.
    run_id = run.info.run_id
    for existing in client.search_model_versions(f"name='{variant}' and run_id='{run_id}'"):
        return existing
    return client.create_model_version(variant, f"{run.info.artifact_uri}/model", run_id,
                                       tags=tags | {REGISTRATION: PENDING})  # fmt: skip


def _create_version(client: Any, retry: Retry, stage: Callable[[str], None], run: Any,
                    tags: dict, variant: str, numeric: dict, eval_hash: str | None,
                    stamped: Path | None,
                    lease_s: float) -> tuple[str, bool, str, str]:  # fmt: skip
    """Create, gate and commit the version under the variant lock; roll back on failure.

    Versions are created, gated and committed under the lock, so any version still
    pending when a run takes the lock belongs to a dead run: it is rolled back first.
    Returns (version, promoted, reason, champion afterwards).
    """
    retry("create registered model", lambda: _ensure_model(client, variant))
    with VariantLock(client, variant, lease_s, retry=retry) as lock:
        for leftover in retry("find leftover versions", lambda: _pending(client, variant)):
            log.warning("%s v%s was left half-registered by a dead run; rolling it back",
                        variant, leftover.version)  # fmt: skip
            _roll_back(client, variant, leftover, retry)
        lock.check()
        created = retry("create model version",
                        lambda: _find_or_create_version(client, variant, run, tags))  # fmt: skip
        version = created.version
        stage("version_created")
        try:
            if stamped is not None:
                _log_version_lineage(client, run.info.run_id, variant, str(version), stamped,
                                     retry)  # fmt: skip
            stage("lineage_logged")
            current = retry("read champion", lambda: alias_version(client, variant, CHAMPION))
            promoted, reason = decide(numeric, eval_hash, current and str(current.version),
                                      current.tags if current else None)  # fmt: skip
            champion = str(version) if promoted else (str(current.version) if current else "")
            _move_aliases(client, retry, lock, variant, str(version), promoted)
            stage("aliases_set")
            lock.check()
            retry("commit version", lambda: client.set_model_version_tag(
                variant, version, REGISTRATION, COMPLETE))  # fmt: skip
        except BaseException as error:
            # Leave no half-registered version behind (best effort: the server may be gone;
            # then the next run to take the lock rolls it back).
            with contextlib.suppress(Exception):
                if lock.lost is None:  # else the run that took the lock rolls it back
                    _roll_back(client, variant, client.get_model_version(variant, version),
                               lambda _what, call: call())  # fmt: skip
            raise RegistryError(
                f"registering {variant} version {version} failed: {error}"
            ) from error
    return str(version), promoted, reason, champion


def _move_aliases(client: Any, retry: Retry, lock: VariantLock, variant: str, version: str,
                  promoted: bool) -> None:  # fmt: skip
    """Record where the aliases pointed (for a rollback), then point them at VERSION."""
    for alias in (CHAMPION, CHALLENGER):
        before = retry(f"read {alias}", lambda a=alias: alias_version(client, variant, a))
        retry(f"record previous {alias}", lambda a=alias, b=before: client.set_model_version_tag(
            variant, version, f"previous_{a}", str(b.version) if b else ""))  # fmt: skip
    lock.check()
    retry("set challenger", lambda: client.set_registered_model_alias(variant, CHALLENGER, version))
    if promoted:
        retry("set champion", lambda: client.set_registered_model_alias(variant, CHAMPION, version))


def _flat_params(model_dir: Path, params: dict | None) -> dict[str, str]:
    flat: dict[str, str] = {}
    for file in ("detector.json", "training.json"):
        path = model_dir / file
        if path.is_file():
            for key, value in json.loads(path.read_text()).items():
                if not isinstance(value, list | dict) or key == "settings":
                    flat[key] = json.dumps(value) if isinstance(value, dict) else str(value)
    flat.update({k: str(v) for k, v in (params or {}).items()})
    return {k[:250]: v[:6000] for k, v in flat.items()}


def _pending(client, variant: str) -> list:
    """Versions whose registration never committed (their run died part-way)."""
    found = client.search_model_versions(f"name='{variant}'")
    return [v for v in found if (v.tags or {}).get(REGISTRATION) == PENDING]


def _roll_back(client, variant: str, version, retry) -> None:
    """Undo a half-registration: aliases back where they were, version deleted, run FAILED."""
    tags = version.tags or {}
    for alias in (CHAMPION, CHALLENGER):
        # Read the alias itself: search results do not always carry a version's aliases.
        holder = retry(f"read {alias}", lambda a=alias: alias_version(client, variant, a))
        if holder is None or str(holder.version) != str(version.version):
            continue
        previous = tags.get(f"previous_{alias}")
        if previous:
            retry(
                f"restore {alias}",
                lambda a=alias, p=previous: client.set_registered_model_alias(variant, a, p),
            )
        else:
            retry(
                f"remove {alias}",
                lambda a=alias: client.delete_registered_model_alias(variant, a),
            )
    retry("delete version", lambda: client.delete_model_version(variant, version.version))
    if version.run_id:
        with contextlib.suppress(Exception):
            client.set_terminated(version.run_id, "FAILED")


def unlock(tracking_uri: str, variant: str) -> tuple[list[str], list[str]]:
    """Operators' --force-unlock: drop VARIANT's lock and roll back half-registered versions.

    Only for when the run holding the lock is known to be dead; returns (locks removed,
    versions rolled back).
    """
    check_name(variant)
    client = mlflow_client(tracking_uri)
    removed = with_retries("force unlock", lambda: force_unlock(client, variant))
    rolled = []
    for leftover in with_retries("find leftover versions", lambda: _pending(client, variant)):
        _roll_back(client, variant, leftover, with_retries)
        rolled.append(str(leftover.version))
    return removed, rolled


def _log_batch(client, run_id: str, params: dict, metrics: dict, tags: dict) -> None:
    from mlflow.entities import Metric, Param, RunTag

    now = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric(k, v, now, 0) for k, v in metrics.items()],
        params=[Param(k, v) for k, v in params.items()],
        tags=[RunTag(k, v) for k, v in tags.items()],
    )


def _check_artifacts(client, run_id: str, local: Path, retry, where: str = "model") -> None:
    """Every file of the local folder is in the run's artifacts under WHERE, with its size."""
    logged = {
        f.path.removeprefix(f"{where}/"): f.file_size
        for f in retry("list artifacts", lambda: client.list_artifacts(run_id, where))
    }
    for path in local.iterdir():
        if path.is_file() and logged.get(path.name) != path.stat().st_size:
            raise RegistryError(
                f"artifact {where}/{path.name} missing or incomplete in run {run_id}"
            )


def _log_version_lineage(client, run_id: str, variant: str, version: str, stamped: Path,
                         retry) -> None:  # fmt: skip
    """Re-log export/model.json naming VERSION, then read it back from the server."""
    from anomalyops.components.deploy.export import stamp_lineage
    from anomalyops.serving.contract.model import CONTRACT_FILE, load_contract

    stamp_lineage(stamped, model_version=version)
    retry(
        "log export lineage",
        lambda: client.log_artifact(run_id, str(stamped / CONTRACT_FILE), EXPORT_PATH),
    )
    check = stamped.parent / "check"
    check.mkdir(exist_ok=True)
    logged = retry(
        "read export lineage",
        lambda: client.download_artifacts(run_id, f"{EXPORT_PATH}/{CONTRACT_FILE}", str(check)),
    )
    lineage = load_contract(logged).lineage
    if (lineage.get("model_version"), lineage.get("mlflow_run_id")) != (version, run_id):
        raise RegistryError(
            f"{EXPORT_PATH}/{CONTRACT_FILE} of run {run_id}: lineage.model_version is "
            f"{lineage.get('model_version')!r}, expected {version!r}"
        )
