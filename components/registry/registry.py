"""The register step: log a trained detector to MLflow and gate its promotion to champion.

One registered model per product variant; aliases `champion` (what serves) and
`challenger` (the newest candidate). A version is created only after every artifact is
logged and checked. Creating it, gating it and moving the aliases happen under the
variant's lock (components/registry/lock.py); the version carries `registration=pending`
and the aliases it displaces until a final `registration=complete` tag commits it. A
failure part-way rolls back at once (aliases restored, version deleted); a run killed
part-way (kill -9, lost machine) is rolled back by the next run that takes the lock, or by
`--force-unlock`. So no half-registered version survives the next registration, and the
champion is always a committed version.

The exported directory (model.onnx + model.json, the serving contract) is logged under
`export/`. Its model.json must name the version it belongs to, which MLflow assigns only
when the version is created: so the run's `export/model.json` is re-logged with the
version number right after creation and before the version gets any alias; if that
fails the version is deleted like any other half-registration.

Promotion rule ("at least as good", on the same evaluation set only):
  1. higher image AUROC wins (differences below 1e-9 count as equal);
  2. on equal AUROC, the lower (or equal) false-positive rate at the calibrated threshold wins.
If the champion was evaluated on a different set (a different hash of the test images
actually evaluated: one skipped as unreadable changes it), the new version is not
promoted: the numbers are not comparable, and the reason says so.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from anomalyops.components.registry.lock import (
    LEASE_S,
    VariantLock,
    error_code,
    force_unlock,
)
from anomalyops.serving.contract.names import check_name
from anomalyops.serving.retries import call_with_retries
from anomalyops.serving.triton.server import free_port

log = logging.getLogger(__name__)
T = TypeVar("T")

CHAMPION, CHALLENGER = "champion", "challenger"
# Version tag: PENDING from creation until its aliases are set, then COMPLETE (the commit).
REGISTRATION, PENDING, COMPLETE = "registration", "pending", "complete"
EXPORT_PATH = "export"  # run artifact folder holding the exported model (serving contract)
AUROC_EPS = 1e-9
# Error codes that a retry can cure; anything else (bad input, missing model) fails at once.
TRANSIENT_CODES = {"INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED"}


class RegistryError(RuntimeError):
    """Registration failed; the message says at which stage and why."""


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


# ---------------------------------------------------------------- local server


class LocalServer:
    """`mlflow server` on 127.0.0.1 with a SQLite store and a local artifact folder.

    ARTIFACTS puts the artifacts in a bucket instead (`s3://bucket/prefix`, as on a
    cluster); the server reaches it with boto3's usual variables (MLFLOW_S3_ENDPOINT_URL
    for MinIO or a local S3 server).
    """

    def __init__(self, root: str | Path, port: int | None = None, artifacts: str = "") -> None:
        self.root = Path(root)
        self.port = port or free_port()
        self.artifacts = artifacts or str((self.root / "artifacts").resolve())
        self.process: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0) -> LocalServer:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "artifacts").mkdir(exist_ok=True)
        mlflow = Path(sys.executable).with_name("mlflow")
        command = [str(mlflow) if mlflow.exists() else "mlflow", "server",
                   "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
                   "--backend-store-uri", f"sqlite:///{(self.root / 'mlflow.db').resolve()}",
                   "--artifacts-destination", self.artifacts]  # fmt: skip
        env = os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        log_file = open(self.root / "server.log", "ab")  # noqa: SIM115 - lives with the process
        self.process = subprocess.Popen(
            command, stdout=log_file, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = (self.root / "server.log").read_text(errors="replace")[-2000:]
                raise RegistryError(f"mlflow server exited with {self.process.returncode}:\n{tail}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response,
            ):
                if response.status == 200:
                    return self
            time.sleep(0.5)
        self.stop()
        raise RegistryError(f"mlflow server on {self.uri} not healthy after {timeout:.0f} s")

    def stop(self) -> None:
        """Stop the server and its workers (its own process group only)."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, 15)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, 9)
            self.process.wait()

    def __enter__(self) -> LocalServer:
        return self.start() if self.process is None else self

    def __exit__(self, *_: object) -> None:
        self.stop()


# ---------------------------------------------------------------- retries


def is_transient(error: Exception) -> bool:
    from mlflow.exceptions import MlflowException

    if isinstance(error, MlflowException):
        code = getattr(error, "error_code", "")
        text = str(error)
        return code in TRANSIENT_CODES or "failed with exception" in text or "database is" in text
    return isinstance(error, OSError | ConnectionError | TimeoutError)


def with_retries(what: str, call: Callable[[], T], attempts: int = 4, backoff: float = 0.5) -> T:
    """Call, retrying transient server errors with exponential backoff, then fail clearly."""
    try:
        return call_with_retries(call, what, attempts, backoff, is_transient, log)
    except Exception as error:
        if not is_transient(error):
            raise
        raise RegistryError(
            f"{what}: tracking server still failing after {attempts} attempts: "
            f"{str(error).splitlines()[0][:300]}"
        ) from error


# ---------------------------------------------------------------- promotion rule


def _number(value: Any) -> float | None:
    try:
        return None if value is None or value == "" else float(value)
    except (TypeError, ValueError):
        return None


def compare(new: dict, champion: dict) -> tuple[bool, str]:
    """(new is at least as good as champion, why), by image AUROC then false-positive rate."""
    new_auc, old_auc = _number(new.get("image_auroc")), _number(champion.get("image_auroc"))
    if new_auc is None:
        return False, "new version has no image_auroc"
    if old_auc is None:
        return True, "champion has no image_auroc"
    if new_auc > old_auc + AUROC_EPS:
        return True, f"image_auroc {new_auc:.4f} > champion's {old_auc:.4f}"
    if new_auc < old_auc - AUROC_EPS:
        return False, f"image_auroc {new_auc:.4f} < champion's {old_auc:.4f}"
    new_fpr, old_fpr = (
        _number(new.get("false_positive_rate")),
        _number(champion.get("false_positive_rate")),
    )
    if new_fpr is None or old_fpr is None or new_fpr <= old_fpr:
        return (
            True,
            f"image_auroc equal ({new_auc:.4f}), false_positive_rate {new_fpr} <= {old_fpr}",
        )
    return False, f"image_auroc equal ({new_auc:.4f}), false_positive_rate {new_fpr} > {old_fpr}"


# ---------------------------------------------------------------- register


def _client(tracking_uri: str):
    # Our retries, not MLflow's (its default waits minutes on a dead server).
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


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
    if export_dir is not None and not (Path(export_dir) / "model.json").is_file():
        raise RegistryError(f"{export_dir}: no model.json; not an exported model folder")
    with tempfile.TemporaryDirectory(prefix="anomalyops-register-") as scratch:
        stamped = None
        if export_dir is not None:
            stamped = Path(scratch) / EXPORT_PATH
            shutil.copytree(export_dir, stamped)
        return _register(model_dir, metrics, variant, tracking_uri, reports,
                         eval_dataset_sha256, params, attempts, backoff, on_stage,
                         stamped, lease_s)  # fmt: skip


def _register(
    model_dir: str | Path,
    metrics: dict[str, Any],
    variant: str,
    tracking_uri: str,
    reports: Sequence[str | Path],
    eval_dataset_sha256: str | None,
    params: dict[str, Any] | None,
    attempts: int,
    backoff: float,
    on_stage: Callable[[str], None] | None,
    stamped: Path | None,
    lease_s: float,
) -> Decision:
    """`register` with the export (if any) already copied to STAMPED, a scratch folder."""
    model_dir = Path(model_dir)
    if not (model_dir / "detector.json").is_file():
        raise RegistryError(f"{model_dir}: no detector.json; not a trained model folder")
    client = _client(tracking_uri)
    stage = on_stage or (lambda _name: None)

    def retry(what: str, call: Callable[[], T]) -> T:
        return with_retries(what, call, attempts, backoff)

    training = json.loads((model_dir / "training.json").read_text())
    numeric = {
        k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and v is not None
    }
    experiment_name = f"anomalyops/{variant}"

    def experiment_id() -> str:
        found = client.get_experiment_by_name(experiment_name)
        if found is not None:
            return found.experiment_id
        try:
            return client.create_experiment(experiment_name)
        except Exception as error:  # a concurrent registration created it first
            if error_code(error) == "RESOURCE_ALREADY_EXISTS":
                return client.get_experiment_by_name(experiment_name).experiment_id
            raise

    run = retry("create run", lambda: client.create_run(retry("experiment", experiment_id)))
    run_id = run.info.run_id
    stage("run_created")
    try:
        if stamped is not None:
            from anomalyops.components.deploy.export import stamp_lineage

            onnx_sha256 = stamp_lineage(
                stamped, mlflow_run_id=run_id, registered_model=variant, model_version=None
            ).onnx.get("sha256")
        tags = {
            "variant": variant,
            "dataset_sha256": str(training.get("dataset_sha256", "")),
            "eval_dataset_sha256": eval_dataset_sha256 or "",
        }
        retry(
            "log params",
            lambda: _log_batch(client, run_id, _flat_params(model_dir, params), numeric, tags),
        )
        stage("params_logged")
        retry("log model", lambda: client.log_artifacts(run_id, str(model_dir), "model"))
        for report in reports:
            report = Path(report)
            if report.is_dir():
                retry(
                    f"log {report}",
                    lambda r=report: client.log_artifacts(run_id, str(r), f"reports/{r.name}"),
                )
            elif report.is_file():
                retry(
                    f"log {report}", lambda r=report: client.log_artifact(run_id, str(r), "reports")
                )
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

    # Only now does a version exist; everything it points at is in place.
    def ensure_model() -> None:
        try:
            client.create_registered_model(variant, description=f"anomaly detector for {variant}")
        except Exception as error:
            if error_code(error) != "RESOURCE_ALREADY_EXISTS":
                raise

    retry("create registered model", ensure_model)
    version_tags = tags | {k: str(v) for k, v in numeric.items()}
    if stamped is not None:
        version_tags |= {"export_path": EXPORT_PATH, "onnx_sha256": str(onnx_sha256)}
    source = f"{run.info.artifact_uri}/model"

    # Versions are created, gated and committed under the variant lock, so any version
    # still pending when a run takes the lock belongs to a dead run: it is rolled back.
    with VariantLock(client, variant, lease_s, retry=retry) as lock:
        for leftover in retry("find leftover versions", lambda: _pending(client, variant)):
            log.warning(
                "%s v%s was left half-registered by a dead run; rolling it back",
                variant,
                leftover.version,
            )
            _roll_back(client, variant, leftover, retry)
        lock.check()

        def create_version():
            # A retry after a lost response must not create a second version for this run.
            for existing in client.search_model_versions(f"name='{variant}' and run_id='{run_id}'"):
                return existing
            return client.create_model_version(
                variant, source, run_id, tags=version_tags | {REGISTRATION: PENDING}
            )

        version = retry("create model version", create_version).version
        stage("version_created")
        try:
            if stamped is not None:
                _log_version_lineage(client, run_id, variant, str(version), stamped, retry)
            stage("lineage_logged")
            promoted, reason, champion = _gate(
                client, variant, version, numeric, eval_dataset_sha256, retry
            )
            # What the aliases pointed at, so a rollback (now or by a later run) restores them.
            for alias in (CHAMPION, CHALLENGER):
                before = retry(f"read {alias}", lambda a=alias: _alias(client, variant, a))
                retry(
                    f"record previous {alias}",
                    lambda a=alias, b=before: client.set_model_version_tag(
                        variant, version, f"previous_{a}", str(b.version) if b else ""
                    ),
                )
            lock.check()
            retry(
                "set challenger",
                lambda: client.set_registered_model_alias(variant, CHALLENGER, version),
            )
            if promoted:
                retry(
                    "set champion",
                    lambda: client.set_registered_model_alias(variant, CHAMPION, version),
                )
            stage("aliases_set")
            lock.check()
            retry(
                "commit version",
                lambda: client.set_model_version_tag(variant, version, REGISTRATION, COMPLETE),
            )
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
    stage("done")
    log.info("%s v%s: %s (%s)", variant, version, "champion" if promoted else "challenger", reason)
    return Decision(
        variant,
        str(version),
        run_id,
        promoted,
        reason,
        str(champion),
        f"models:/{variant}/{version}",
        tracking_uri,
    )


def _alias(client, name: str, alias: str):
    """The version ALIAS points at, or None."""
    try:
        return client.get_model_version_by_alias(name, alias)
    except Exception as error:
        if error_code(error) in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def _pending(client, variant: str) -> list:
    """Versions whose registration never committed (their run died part-way)."""
    found = client.search_model_versions(f"name='{variant}'")
    return [v for v in found if (v.tags or {}).get(REGISTRATION) == PENDING]


def _roll_back(client, variant: str, version, retry) -> None:
    """Undo a half-registration: aliases back where they were, version deleted, run FAILED."""
    tags = version.tags or {}
    for alias in (CHAMPION, CHALLENGER):
        # Read the alias itself: search results do not always carry a version's aliases.
        holder = retry(f"read {alias}", lambda a=alias: _alias(client, variant, a))
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
                f"remove {alias}", lambda a=alias: client.delete_registered_model_alias(variant, a)
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
    client = _client(tracking_uri)
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


def champion_version(tracking_uri: str, variant: str) -> str | None:
    """The version the `champion` alias points at now (None when the variant has none)."""
    client = _client(tracking_uri)
    current = with_retries("read champion", lambda: _alias(client, variant, CHAMPION))
    return str(current.version) if current is not None else None


def download_export(tracking_uri: str, run_id: str, target: str | Path) -> Path:
    """Fetch a run's exported directory (model.onnx + model.json) into TARGET."""
    client = _client(tracking_uri)
    Path(target).mkdir(parents=True, exist_ok=True)
    path = with_retries(
        "download export", lambda: client.download_artifacts(run_id, EXPORT_PATH, str(target))
    )
    if not (Path(path) / "model.json").is_file():
        raise RegistryError(f"run {run_id}: no {EXPORT_PATH}/model.json; was it registered "
                            "with an exported model?")  # fmt: skip
    return Path(path)


def _gate(client, variant, version, metrics, eval_hash, retry) -> tuple[bool, str, str]:
    """(promote?, why, champion afterwards); decides only (called under the variant lock)."""
    current = retry("read champion", lambda: _alias(client, variant, CHAMPION))
    skipped = int(_number(metrics.get("test_skipped")) or 0)
    if current is None:
        promoted, reason = True, "first version of this variant"
    elif eval_hash and current.tags.get("eval_dataset_sha256") != eval_hash:
        promoted = False
        why = f"{skipped} unreadable test images were skipped, so " if skipped else ""
        reason = (
            f"{why}champion v{current.version} was evaluated on a different evaluation set "
            f"({current.tags.get('eval_dataset_sha256', '?')[:12]} vs {eval_hash[:12]}); "
            "metrics are not comparable"
        )
    elif not eval_hash:
        promoted, reason = False, "no evaluation-set hash given; cannot compare with champion"
    else:
        promoted, reason = compare(metrics, current.tags)
        reason = f"{reason} (champion v{current.version})"
    if promoted:
        return True, reason, str(version)
    return False, reason, str(current.version) if current else ""


def set_champion(tracking_uri: str, variant: str, version: str) -> str | None:
    """Point `champion` at VERSION (rollback, or undoing a failed deploy); returns the old one.

    Refuses a version the registry does not hold. Taken under the variant lock, like a
    promotion, so it cannot interleave with one.
    """
    client = _client(tracking_uri)

    def exists() -> bool:
        try:
            client.get_model_version(variant, str(version))
            return True
        except Exception as error:
            if error_code(error) in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return False
            raise

    if not with_retries("read version", exists):
        raise RegistryError(f"registered model {variant!r} has no version {version}")
    with VariantLock(client, variant, LEASE_S, retry=with_retries):
        current = with_retries("read champion", lambda: _alias(client, variant, CHAMPION))
        with_retries(
            "set champion",
            lambda: client.set_registered_model_alias(variant, CHAMPION, str(version)),
        )
    return str(current.version) if current is not None else None


def download_champion_model(
    tracking_uri: str, variant: str, target: str | Path
) -> tuple[str, Path] | None:
    """The champion's trained model folder (what few-shot retraining extends) in TARGET.

    Returns (version, folder), or None when the variant has no champion yet.
    """
    client = _client(tracking_uri)
    current = with_retries("read champion", lambda: _alias(client, variant, CHAMPION))
    if current is None:
        return None
    Path(target).mkdir(parents=True, exist_ok=True)
    path = with_retries(
        "download model",
        lambda: client.download_artifacts(current.run_id, "model", str(target)),
    )
    if not (Path(path) / "detector.json").is_file():
        raise RegistryError(f"{variant} v{current.version}: run {current.run_id} has no "
                            "model/detector.json")  # fmt: skip
    return str(current.version), Path(path)


def record_evaluation(
    tracking_uri: str, variant: str, version: str, metrics: dict, eval_dataset_sha256: str
) -> None:
    """Re-tag VERSION with its metrics on another evaluation set, so the gate compares like
    with like (a retraining enlarges the set with reviewed defects and new good images)."""
    client = _client(tracking_uri)
    tags = {k: str(float(v)) for k, v in metrics.items() if isinstance(v, int | float)}
    tags["eval_dataset_sha256"] = eval_dataset_sha256
    for key, value in tags.items():
        with_retries(
            f"tag {variant} v{version}",
            lambda k=key, v=value: client.set_model_version_tag(variant, version, k, v),
        )
