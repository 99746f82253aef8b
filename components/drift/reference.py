"""Where a drift check's reference comes from: the registry's champion, or a local folder.

The reference must be the one of the model that scored the rows, so the source also
names that model version: the registry's `champion` alias, or the `lineage.model_version`
in the model.json beside a local reference.json (an export or a Triton version folder).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from anomalyops.serving.contract.model import CONTRACT_FILE, ContractError, load_contract
from anomalyops.serving.contract.reference import REFERENCE_FILE, Reference, load_reference


@dataclass(frozen=True)
class ReferenceSource:
    reference: Reference
    model_version: str | None  # the version whose rows count (None: not known)
    description: str  # where it came from, for the verdict and the CLI


def local_reference(path: str | Path) -> ReferenceSource:
    """A model, export or version folder, or a reference.json path."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    reference = load_reference(path)
    version = None
    if (folder / CONTRACT_FILE).is_file():
        try:
            version = load_contract(folder).lineage.get("model_version")
        except ContractError:
            version = None  # a reference without a readable contract still compares
    return ReferenceSource(reference, str(version) if version else None, str(path.resolve()))


def champion_reference(tracking_uri: str, variant: str, scratch: str | Path) -> ReferenceSource:
    """The champion's reference.json, as registered (its run's `export/reference.json`)."""
    from anomalyops.components.registry.client import (
        CHAMPION,
        EXPORT_PATH,
        RegistryError,
        mlflow_client,
        with_retries,
    )

    client = mlflow_client(tracking_uri)
    try:
        version = with_retries(
            "read champion", lambda: client.get_model_version_by_alias(variant, CHAMPION)
        )
    except Exception as error:
        raise RegistryError(f"{tracking_uri}: {variant!r} has no champion ({error})") from None
    target = Path(scratch) / f"reference-v{version.version}"
    target.mkdir(parents=True, exist_ok=True)
    artifact = f"{EXPORT_PATH}/{REFERENCE_FILE}"
    try:
        local = with_retries(
            "download reference",
            lambda: client.download_artifacts(version.run_id, artifact, str(target)),
        )
    except Exception as error:
        raise RegistryError(
            f"{variant} v{version.version} (run {version.run_id}) has no {artifact}; was it "
            f"trained before references existed? ({error})"
        ) from None
    return ReferenceSource(
        load_reference(local),
        str(version.version),
        f"{tracking_uri} {variant}@{CHAMPION} = v{version.version} ({artifact})",
    )


def resolve_reference(
    variant: str, reference: str | None, tracking_uri: str | None, scratch: str | Path
) -> ReferenceSource:
    """Exactly one of REFERENCE (local path) and TRACKING_URI (registry champion)."""
    if bool(reference) == bool(tracking_uri):
        raise ValueError("drift: give exactly one of a reference path and a tracking URI")
    if reference:
        return local_reference(reference)
    return champion_reference(tracking_uri, variant, scratch)
