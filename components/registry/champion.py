"""What the registry says serves a variant: read, move and download the champion."""

from __future__ import annotations

from pathlib import Path

from anomalyops.components.registry.client import (
    CHAMPION,
    EXPORT_PATH,
    RegistryError,
    alias_version,
    mlflow_client,
    with_retries,
)
from anomalyops.components.registry.lock import LEASE_S, VariantLock, error_code


def champion_version(tracking_uri: str, variant: str) -> str | None:
    """The version the `champion` alias points at now (None when the variant has none)."""
    client = mlflow_client(tracking_uri)
    current = with_retries("read champion", lambda: alias_version(client, variant, CHAMPION))
    return str(current.version) if current is not None else None


def download_export(tracking_uri: str, run_id: str, target: str | Path) -> Path:
    """Fetch a run's exported directory (model.onnx + model.json) into TARGET."""
    client = mlflow_client(tracking_uri)
    Path(target).mkdir(parents=True, exist_ok=True)
    path = with_retries(
        "download export", lambda: client.download_artifacts(run_id, EXPORT_PATH, str(target))
    )
    if not (Path(path) / "model.json").is_file():
        raise RegistryError(f"run {run_id}: no {EXPORT_PATH}/model.json; was it registered "
                            "with an exported model?")  # fmt: skip
    return Path(path)


def set_champion(tracking_uri: str, variant: str, version: str) -> str | None:
    """Point `champion` at VERSION (rollback, or undoing a failed deploy); returns the old one.

    Refuses a version the registry does not hold. Taken under the variant lock, like a
    promotion, so it cannot interleave with one.
    """
    client = mlflow_client(tracking_uri)

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
        current = with_retries("read champion", lambda: alias_version(client, variant, CHAMPION))
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
    client = mlflow_client(tracking_uri)
    current = with_retries("read champion", lambda: alias_version(client, variant, CHAMPION))
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
    client = mlflow_client(tracking_uri)
    tags = {k: str(float(v)) for k, v in metrics.items() if isinstance(v, int | float)}
    tags["eval_dataset_sha256"] = eval_dataset_sha256
    for key, value in tags.items():
        with_retries(
            f"tag {variant} v{version}",
            lambda k=key, v=value: client.set_model_version_tag(variant, version, k, v),
        )
