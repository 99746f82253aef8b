"""The contract of each model version Triton serves, read when that version first answers.

Triton answers every inference with the `model_version` that computed it. Thresholds, the
pixel threshold, the model identity and the unusable-frame bounds must come from that
version, not from a model.json read once at start: a deploy or a rollback changes them
under a running transformer. A Triton model repository keeps each version's files in
`<repository>/<model>/<N>/` (model.json and reference.json; N is the registered MLflow
version), so readers look there. The repository may be a bucket URI (`s3://...`, what the
deploy step uploads to and the Triton runtime serves from): then each version's two JSON
files are fetched the first time that version answers, so a transformer that meets a
Triton revision newer or older than itself (a canary, a rolling update) still labels
with the thresholds of the version that scored.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from anomalyops.serving.contract.frame_check import FrameCheck
from anomalyops.serving.contract.model import (
    CONTRACT_FILE,
    INPUT_NAME,
    ContractError,
    ModelContract,
    load_contract,
)
from anomalyops.serving.contract.reference import REFERENCE_FILE, ReferenceError, load_reference
from anomalyops.serving.storage import StorageError, download, is_bucket_uri


class VersionError(RuntimeError):
    """A served version's files are missing, malformed, or disagree with Triton's model."""


@dataclass(frozen=True)
class ServedVersion:
    number: str
    folder: Path
    contract: ModelContract
    frames: FrameCheck

    @property
    def sha256(self) -> str | None:
        return self.contract.onnx.get("sha256")


def _dims(spec: dict) -> list[int]:
    return [int(d) for d in spec.get("dims", [])]  # Triton's JSON gives int64 dims as text


def check_config(contract: ModelContract, config: dict, where: str) -> None:
    """Refuse a model.json that does not describe the model Triton runs, naming both sides.

    A mismatch would otherwise fail every request (wrong input shape) or, worse, pass:
    thresholds of one model applied to another's scores.
    """
    height, width, channels = contract.height, contract.width, contract.channels
    expected = {
        INPUT_NAME: ("input", "TYPE_UINT8", [height, width, channels]),
        "score": ("output", "TYPE_FP32", [1]),
        "anomaly_map": ("output", "TYPE_FP32", [1, height, width]),
    }
    found = {spec["name"]: spec for kind in ("input", "output") for spec in config.get(kind, [])}
    problems = []
    for name, (kind, dtype, dims) in expected.items():
        spec = found.get(name)
        if spec is None:
            problems.append(f"Triton's model has no {kind} {name!r}")
        elif (spec.get("data_type"), _dims(spec)) != (dtype, dims):
            problems.append(
                f"{kind} {name!r} is {spec.get('data_type')} {_dims(spec)} in Triton, "
                f"{dtype} {dims} in model.json"
            )
    if problems:
        raise VersionError(f"{where} disagrees with Triton's {config.get('name')!r}: "
                           + "; ".join(problems))  # fmt: skip


class ServedVersions:
    """Each version's model.json + reference.json, read once, when it first answers.

    CONFIG, when given, returns Triton's config of the model; every version read is
    checked against it (check_config), so a disagreeing model.json fails loudly once.
    """

    def __init__(
        self, repository: str | Path, name: str, config: Callable[[], dict] | None = None
    ) -> None:
        self.bucket = f"{str(repository).rstrip('/')}/{name}" if is_bucket_uri(repository) else None
        if self.bucket:  # versions' JSON files are fetched into a local cache on first sight
            # removed with this object or at exit (TemporaryDirectory's finalizer)
            self._cache_dir = tempfile.TemporaryDirectory(prefix="anomalyops-versions-")
            self.model_dir = Path(self._cache_dir.name) / name
        else:
            self.model_dir = Path(repository) / name
        self.config = config
        self._cache: dict[str, ServedVersion] = {}
        self._lock = threading.Lock()

    def get(self, number: str) -> ServedVersion:
        """Version NUMBER's contract (VersionError when its folder cannot be used)."""
        with self._lock:
            if number not in self._cache:
                self._cache[number] = self._read(number)
            return self._cache[number]

    def _read(self, number: str) -> ServedVersion:
        name = self.model_dir.name
        if not number.isdigit():
            raise VersionError(f"Triton did not say which version of {name!r} answered "
                               f"(model_version {number!r})")  # fmt: skip
        folder = self.model_dir / number
        if self.bucket and not folder.is_dir():
            try:
                download(f"{self.bucket}/{number}", folder, only=(CONTRACT_FILE, REFERENCE_FILE))
            except StorageError as error:
                raise VersionError(f"{name!r} version {number}: {error}") from None
        if not folder.is_dir():
            raise VersionError(
                f"{folder}: missing; Triton serves {name!r} version {number} but the "
                f"repository at {self.model_dir.parent} has no such folder (is it the one "
                "Triton serves from?)"
            )
        try:
            contract = load_contract(folder)
            reference = load_reference(folder)
        except (ContractError, ReferenceError) as error:
            raise VersionError(f"{name!r} version {number}: {error}") from None
        if self.config is not None:
            check_config(contract, self.config(), f"{folder / 'model.json'}")
        return ServedVersion(
            number, folder, contract, FrameCheck.from_reference(reference, contract.input_size)
        )
