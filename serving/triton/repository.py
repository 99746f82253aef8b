"""Build a versioned Triton model repository from exported model directories.

One Triton model per product variant; each version is an integer folder numbered like
the registered MLflow version, holding model.onnx, its own model.json and its own
config (`triton_config.pbtxt`). Triton runs with explicit model control and the model's
config.pbtxt names exactly one version (`version_policy: specific`): switching what is
served, forward or back, is one atomic rewrite of config.pbtxt plus a load request
(serving/triton/model_control.py), and it survives a restart of Triton. A version folder
appears whole or not at all (staged beside it, then renamed), so a failed build never
leaves a half-copied version or removes the one Triton serves; the newest KEEP_VERSIONS
folders stay for rollback. Two flavours of the same model.onnx:

- `onnxruntime`: Triton's onnxruntime backend on GPU nodes, optional TensorRT.
- `python`: the python backend running onnxruntime on the CPU (serving/triton/python_backend.py),
  what the bundled local Triton can run.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Literal

from filelock import FileLock

from anomalyops.serving.contract.model import (
    CONTRACT_FILE,
    INPUT_NAME,
    MAP_OUTPUT,
    SCORE_OUTPUT,
    ModelContract,
    load_contract,
    verify_model_files,
)
from anomalyops.serving.contract.names import check_name
from anomalyops.serving.contract.reference import REFERENCE_FILE

Flavour = Literal["onnxruntime", "python"]
FLAVOURS: tuple[str, ...] = ("onnxruntime", "python")
PYTHON_MODEL = Path(__file__).with_name("python_backend.py")
THREADS_MODULE = Path(__file__).parents[1] / "threads.py"  # loaded by PYTHON_MODEL


def _dims(values: tuple[int, ...] | list[int]) -> str:
    return "[ " + ", ".join(str(v) for v in values) + " ]"


def model_config(
    name: str,
    contract: ModelContract,
    flavour: Flavour,
    version: int,
    max_batch_size: int | None = None,
    tensorrt: bool = False,
    queue_delay_us: int = 2000,
    instances: int = 1,
    threads: int | None = None,
) -> str:
    """config.pbtxt text for one variant serving exactly VERSION (explicit model control);
    max batch from the contract unless given. The python flavour's threads per instance:
    THREADS, else the contract's `resources.threads`, else `auto` (the server's CPUs over
    INSTANCES, worked out where it runs: serving/threads.py)."""
    if flavour not in FLAVOURS:
        raise ValueError(f"flavour must be one of {FLAVOURS}, got {flavour!r}")
    threads = threads if threads is not None else contract.threads
    if threads is not None and (isinstance(threads, bool) or threads < 1):
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    if instances < 1:
        raise ValueError(f"instances must be at least 1, got {instances}")
    if tensorrt and flavour != "onnxruntime":
        raise ValueError("tensorrt is only available with the onnxruntime flavour")
    height, width, channels = contract.height, contract.width, contract.channels
    image_dims = _dims((height, width, channels))
    lines = [f'name: "{name}"']
    if flavour == "onnxruntime":
        lines += ['platform: "onnxruntime_onnx"', 'default_model_filename: "model.onnx"']
        # ONNX gives score as [N]; batched Triton outputs need a dim: exposed as N×1.
        score = (
            f'output [\n  {{ name: "{SCORE_OUTPUT}" data_type: TYPE_FP32 dims: [ 1 ]'
            " reshape: { shape: [ ] } },"
        )
        kind = (
            "KIND_AUTO"  # a GPU where the node has one, else the CPU (KIND_GPU fails on CPU nodes)
        )
    else:
        lines.append('backend: "python"')
        score = f'output [\n  {{ name: "{SCORE_OUTPUT}" data_type: TYPE_FP32 dims: [ 1 ] }},'
        kind = "KIND_CPU"
    lines += [
        f"max_batch_size: {max_batch_size or contract.max_batch_size}",
        f"version_policy: {{ specific: {{ versions: [ {version} ] }} }}",
        "input [",
        f'  {{ name: "{INPUT_NAME}" data_type: TYPE_UINT8 dims: {image_dims} }}',
        "]",
        score,
        f'  {{ name: "{MAP_OUTPUT}" data_type: TYPE_FP32 dims: {_dims((1, height, width))} }}',
        "]",
        f"instance_group [ {{ count: {instances} kind: {kind} }} ]",
        f"dynamic_batching {{ max_queue_delay_microseconds: {queue_delay_us} }}",
    ]
    if tensorrt:
        lines += [
            "optimization { execution_accelerators { gpu_execution_accelerator: [ {",
            '  name: "tensorrt"',
            '  parameters { key: "precision_mode" value: "FP16" }',
            '  parameters { key: "max_workspace_size_bytes" value: "4294967296" }',
            "} ] } }",
        ]
    if flavour == "python":
        pinned = "auto" if threads is None else str(threads)
        lines.append(f'parameters {{ key: "threads" value: {{ string_value: "{pinned}" }} }}')
    # Thresholds ride along so a plant client can label without model.json (still not in
    # the graph: a request may override them).
    for key, value in (("image", contract.image_threshold), ("pixel", contract.pixel_threshold)):
        lines.append(
            f'parameters {{ key: "{key}_threshold" value: {{ string_value: "{value!r}" }} }}'
        )
    # How a client fits an image to the input (the graph cannot tell a border from a part).
    keep = str(contract.keep_aspect).lower()
    lines.append(f'parameters {{ key: "keep_aspect" value: {{ string_value: "{keep}" }} }}')
    lines += [
        "model_warmup [ {",
        '  name: "zeros" batch_size: 1',
        f'  inputs {{ key: "{INPUT_NAME}" value: {{ data_type: TYPE_UINT8 '
        f"dims: {_dims((height, width, channels))} zero_data: true }} }}",
        "} ]",
    ]
    return "\n".join(lines) + "\n"


LOCK_FILE = ".deploy.lock"  # Triton reads only sub-folders of a model folder: files are safe
VERSION_CONFIG = "triton_config.pbtxt"  # each version's own config, copied in to serve it
KEEP_VERSIONS = 5  # version folders kept per model for rollback (the served one always stays)
_SERVED = re.compile(r"version_policy: \{ specific: \{ versions: \[ (\d+) \] \} \}")


@contextlib.contextmanager
def model_lock(repository: str | Path, name: str) -> Iterator[Path]:
    """Hold an exclusive lock on one model of the repository (deploys of a variant queue)."""
    model_dir = Path(repository) / name
    model_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(model_dir / LOCK_FILE):
        yield model_dir


def versions(model_dir: str | Path) -> list[int]:
    """The integer version folders of a model, ascending."""
    return sorted(int(p.name) for p in Path(model_dir).glob("*") if p.is_dir() and p.name.isdigit())


def served_version(model_dir: str | Path) -> int | None:
    """The version config.pbtxt tells Triton to serve (None when the model has none yet)."""
    config = Path(model_dir) / "config.pbtxt"
    found = _SERVED.search(config.read_text()) if config.is_file() else None
    return int(found.group(1)) if found else None


def write_atomically(path: Path, text: str) -> None:
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.",
                                     delete=False) as handle:  # fmt: skip
        handle.write(text)
    os.replace(handle.name, path)


def set_served(model_dir: str | Path, version: int) -> None:
    """Make VERSION the one Triton serves: its config becomes the model's config.pbtxt.

    Written atomically, so a restarted Triton loads either the old or the new version,
    never a mix; the model-level model.json follows for readers that want the served one.
    """
    model_dir = Path(model_dir)
    version_dir = model_dir / str(version)
    config = version_dir / VERSION_CONFIG
    if not config.is_file():
        raise FileNotFoundError(f"{config}: missing; version {version} of {model_dir.name} "
                                "cannot be served")  # fmt: skip
    write_atomically(model_dir / CONTRACT_FILE, (version_dir / CONTRACT_FILE).read_text())
    write_atomically(model_dir / "config.pbtxt", config.read_text())


def prune_versions(model_dir: str | Path, keep: int = KEEP_VERSIONS) -> list[int]:
    """Delete all but the KEEP newest version folders, never the served one; returns those gone."""
    model_dir = Path(model_dir)
    served = served_version(model_dir)
    numbers = versions(model_dir)
    gone = [v for v in numbers[: max(len(numbers) - keep, 0)] if v != served]
    for number in gone:
        shutil.rmtree(model_dir / str(number))
    return gone


def next_version(model_dir: Path) -> int:
    """One more than the highest integer version folder already there (1 when none)."""
    return max(versions(model_dir), default=0) + 1


def _version_for(contract: ModelContract, model_dir: Path, version: int | None) -> int:
    """VERSION, else the registered version named by the lineage, else the next free one."""
    if version is None:
        registered = str(contract.lineage.get("model_version") or "")
        version = int(registered) if registered.isdigit() else next_version(model_dir)
    if version < 1:
        raise ValueError(f"Triton version must be a positive integer, got {version}")
    return version


def _same_model(version_dir: Path, contract: ModelContract) -> bool:
    existing = load_contract(version_dir)
    return (existing.onnx.get("sha256"), existing.lineage.get("mlflow_run_id")) == (
        contract.onnx.get("sha256"),
        contract.lineage.get("mlflow_run_id"),
    )


def add_model(
    repository: str | Path,
    name: str,
    export_dir: str | Path,
    flavour: Flavour = "python",
    version: int | None = None,
    serve: bool = True,
    **config: object,
) -> Path:
    """Copy one exported model into `repository/name/<version>/`; returns that folder.

    The folder number is VERSION, else the MLflow version in model.json's lineage (so
    "version N" means one thing in the registry and in Triton), else the next free one.
    Adding the same model again returns its folder; a different model under a taken
    number is refused. SERVE=False adds the folder without changing what is served.
    """
    check_name(name, "Triton model")
    export_dir = Path(export_dir)
    contract = load_contract(export_dir)
    verify_model_files(export_dir, contract)
    model_dir = Path(repository) / name
    model_dir.mkdir(parents=True, exist_ok=True)
    number = _version_for(contract, model_dir, version)
    config_text = model_config(name, contract, flavour, number, **config)  # refuse bad args
    version_dir = model_dir / str(number)
    if version_dir.is_dir():
        if not _same_model(version_dir, contract):
            raise ValueError(f"{version_dir}: already holds a different model; "
                             f"not replacing version {number}")  # fmt: skip
        if serve:
            set_served(model_dir, number)
        return version_dir
    # Triton skips version folders whose name is not an integer: stage under a dot name.
    staging = model_dir / f".staging-{uuid.uuid4().hex}"
    served = served_version(model_dir)
    try:
        staging.mkdir()
        for source in sorted(export_dir.glob("model.onnx*")):
            shutil.copy2(source, staging / source.name)
        for name in (CONTRACT_FILE, REFERENCE_FILE):
            if (export_dir / name).is_file():
                shutil.copy2(export_dir / name, staging / name)
        if flavour == "python":
            shutil.copy2(THREADS_MODULE, staging / THREADS_MODULE.name)
            shutil.copy2(PYTHON_MODEL, staging / "model.py")
        (staging / VERSION_CONFIG).write_text(config_text)
        staging.rename(version_dir)  # fails rather than merge if the folder appeared
        if serve:
            try:
                set_served(model_dir, number)
            except BaseException:
                shutil.rmtree(version_dir, ignore_errors=True)
                if served is not None:
                    set_served(model_dir, served)
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return version_dir


def build_repository(
    repository: str | Path,
    exports: Mapping[str, str | Path],
    flavour: Flavour = "python",
    **config: object,
) -> Path:
    """Add every `variant -> exported dir` as its own model; returns the repository path."""
    if not exports:
        raise ValueError("build_repository: no exported models given")
    repository = Path(repository)
    for name, export_dir in exports.items():
        add_model(repository, name, export_dir, flavour, **config)
    return repository
