"""Release a registered version: serve the new champion from a versioned Triton repository.

The deploy step (components/steps/deploy.py) runs it after register on every pipeline
run. Only a version that became champion is deployed; otherwise the step writes nothing
and says why (the champion keeps serving).
What is deployed is what the registry holds (the run's `export/`, lineage stamped with
the version), not a local file, and only while that version is still champion: checked
under a per-model lock, so concurrent deploys of one variant cannot put an older
champion on top. Each deploy adds the Triton version folder numbered like the
registered version (serving/triton/repository.py), written whole or not at all, and switches
what is served to it (serving/triton/model_control.py): with a Triton URL, the running server
loads it and the old version is retired only once the new one answers. A version that
fails to load leaves the previous one serving; the `champion` alias is then moved back
to that version, so the registry's champion is always what is served, and the step fails.

With `target="kserve"` (a cluster) the version becomes a Triton repository under its own
prefix of a bucket (`REPOSITORY/<variant>/v<version>`) and the line's InferenceService,
which the chart created, is rolled to it (components/deploy/kserve.py: only the model
URIs and, in Knative mode, the canary share change). The default `python` flavour runs in
the chart's Triton image (Dockerfile target `triton`: onnxruntime inside Triton).
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from anomalyops.components.registry.champion import champion_version, download_export, set_champion
from anomalyops.serving.contract.model import ContractError, load_contract
from anomalyops.serving.triton.model_control import ModelControlError, switch_version
from anomalyops.serving.triton.repository import (
    FLAVOURS,
    add_model,
    model_lock,
    served_version,
)


class DeployError(RuntimeError):
    """The new version could not be served; the previous one still is."""


@dataclass
class Deployment:
    deployed: bool  # True when the repository now serves this registered version
    reason: str
    repository: str
    model: str  # Triton model name (= variant)
    flavour: str
    registered_version: str
    triton_version: str | None = None  # the version folder serving it, when deployed
    target: str = "repository"  # or "kserve"
    storage_uri: str | None = None  # kserve: the repository the InferenceService serves
    inference_service: str | None = None  # kserve: namespace/name

    def to_dict(self) -> dict:
        return asdict(self)


def _check_lineage(export_dir: Path, variant: str, version: str, run_id: str) -> None:
    """The downloaded model.json must say it is VARIANT's VERSION from RUN_ID."""
    lineage = load_contract(export_dir).lineage
    expected = {"registered_model": variant, "model_version": version, "mlflow_run_id": run_id}
    for key, want in expected.items():
        if lineage.get(key) != want:
            raise ContractError(
                f"{export_dir / 'model.json'}: lineage.{key} is {lineage.get(key)!r}, "
                f"expected {want!r}"
            )


TARGETS = ("repository", "kserve")


def release(
    decision: dict,
    repository: str,
    flavour: str = "python",
    triton_url: str = "",
    target: str = "repository",
    kserve_json: str = "{}",
) -> Deployment:
    """Serve DECISION's version from REPOSITORY if it is (still) champion; else change nothing.

    TRITON_URL is a running Triton's model-control address ("" = none running: only the
    repository changes and `anomalyops serve` loads it at start). TARGET "kserve":
    REPOSITORY is a bucket URI and KSERVE_JSON the KServeSettings.
    """
    for key in ("variant", "version", "run_id", "promoted", "champion", "tracking_uri"):
        if key not in decision:
            raise ValueError(f"deploy: decision has no field {key!r}")
    if flavour not in FLAVOURS:
        raise ValueError(f"deploy: flavour must be one of {FLAVOURS}, got {flavour!r}")
    if target not in TARGETS:
        raise ValueError(f"deploy: target must be one of {TARGETS}, got {target!r}")
    variant, version = decision["variant"], str(decision["version"])
    if target == "repository":
        repository = str(Path(repository).resolve())

    def result(deployed: bool, reason: str, triton_version: str | None = None) -> Deployment:
        return Deployment(deployed, reason, repository, variant, flavour, version, triton_version)

    if not decision["promoted"]:
        serving = f"v{decision['champion']}" if decision["champion"] else "no version"
        return result(
            False,
            f"{variant} v{version} is not champion ({decision['reason']}); "
            f"{serving} keeps serving, repository unchanged",
        )
    if target == "kserve":
        return _deploy_to_kserve(decision, repository, flavour, kserve_json)
    with model_lock(repository, variant) as model_dir:
        current = champion_version(decision["tracking_uri"], variant)
        if current != version:
            return result(False, f"{variant} champion is now v{current}, not v{version}; "
                                 "repository unchanged")  # fmt: skip
        served = served_version(model_dir)
        if str(served) == version and not triton_url:
            return result(True, f"{variant} v{version} already deployed", version)
        try:  # whatever fails (integrity, copy, load), the served version stays champion
            with tempfile.TemporaryDirectory(prefix="anomalyops-deploy-") as scratch:
                export_dir = download_export(decision["tracking_uri"], decision["run_id"], scratch)
                _check_lineage(export_dir, variant, version, decision["run_id"])
                version_dir = add_model(repository, variant, export_dir, flavour, serve=False)
            switch_version(repository, variant, int(version_dir.name), triton_url or None)
        except (ModelControlError, ContractError, OSError) as error:
            undo = "no champion to fall back to"
            if served is not None:
                set_champion(decision["tracking_uri"], variant, str(served))
                undo = f"champion alias moved back to v{served}"
            raise DeployError(f"deploy of {variant} v{version} failed: {error}; {undo}") from None
    where = f"loaded by Triton at {triton_url}" if triton_url else "served from the next start"
    return result(
        True,
        f"{variant} v{version} deployed as Triton model {variant!r} version {version_dir.name}, "
        f"{where}" + (f" (replacing version {served})" if served else ""),
        version_dir.name,
    )


def _deploy_to_kserve(
    decision: dict, repository: str, flavour: str, kserve_json: str
) -> Deployment:
    """Upload the version's Triton repository to its own prefix, then roll the line to it."""
    from anomalyops.components.deploy.kserve import KServeSettings, custom_objects_api, rollout
    from anomalyops.serving.storage import is_bucket_uri, upload

    settings = KServeSettings.from_json(kserve_json)  # bad settings fail before any work
    if not is_bucket_uri(repository):
        raise ValueError(f"deploy: target kserve needs REPOSITORY as s3:// or gs://, got "
                         f"{repository!r}")  # fmt: skip
    variant, version, run_id = decision["variant"], str(decision["version"]), decision["run_id"]
    name = settings.name
    storage_uri = f"{repository.rstrip('/')}/{variant}/v{version}"

    def result(deployed: bool, reason: str) -> Deployment:
        return Deployment(
            deployed, reason, repository, variant, flavour, version,
            triton_version=version if deployed else None, target="kserve",
            storage_uri=storage_uri, inference_service=f"{settings.namespace}/{name}",
        )  # fmt: skip

    current = champion_version(decision["tracking_uri"], variant)
    if current != version:
        return result(False, f"{variant} champion is now v{current}, not v{version}; "
                             f"InferenceService {settings.namespace}/{name} unchanged")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="anomalyops-deploy-") as scratch:
        export_dir = download_export(decision["tracking_uri"], run_id, Path(scratch) / "export")
        _check_lineage(export_dir, variant, version, run_id)
        add_model(Path(scratch) / "repository", variant, export_dir, flavour)
        upload(Path(scratch) / "repository", storage_uri)
    done = rollout(custom_objects_api(), settings, storage_uri)
    where = f"{settings.namespace}/{name} ({done.mode} mode, {storage_uri})"
    return result(True, f"{variant} v{version} {done.action} on InferenceService {where}")
