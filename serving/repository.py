"""Build a versioned Triton model repository from exported model directories.

One Triton model per product variant; each build adds a new integer version folder, so
a rollback is a repository change, not a rebuild. A version folder appears whole or not
at all (staged beside it, then renamed; config.pbtxt replaced atomically), so a failed
build never leaves Triton a half-copied newest version or removes the one it serves.
Two flavours of the same model.onnx:

- `onnxruntime`: Triton's onnxruntime backend on GPU nodes, optional TensorRT.
- `python`: the python backend running onnxruntime on the CPU (serving/python_backend.py),
  what the bundled local Triton can run.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Literal

from anomalyops.serving.contract import CONTRACT_FILE, ModelContract, load_contract

Flavour = Literal["onnxruntime", "python"]
FLAVOURS: tuple[str, ...] = ("onnxruntime", "python")
PYTHON_MODEL = Path(__file__).with_name("python_backend.py")


def _dims(values: tuple[int, ...] | list[int]) -> str:
    return "[ " + ", ".join(str(v) for v in values) + " ]"


def model_config(
    name: str,
    contract: ModelContract,
    flavour: Flavour,
    max_batch_size: int | None = None,
    tensorrt: bool = False,
    queue_delay_us: int = 2000,
    instances: int = 1,
) -> str:
    """config.pbtxt text for one variant; max batch from the contract unless given."""
    if flavour not in FLAVOURS:
        raise ValueError(f"flavour must be one of {FLAVOURS}, got {flavour!r}")
    if tensorrt and flavour != "onnxruntime":
        raise ValueError("tensorrt is only available with the onnxruntime flavour")
    height, width, channels = contract.height, contract.width, contract.channels
    lines = [f'name: "{name}"']
    if flavour == "onnxruntime":
        lines += ['platform: "onnxruntime_onnx"', 'default_model_filename: "model.onnx"']
        # ONNX gives score as [N]; batched Triton outputs need a dim: exposed as N×1.
        score = (
            'output [\n  { name: "score" data_type: TYPE_FP32 dims: [ 1 ]'
            " reshape: { shape: [ ] } },"
        )
        kind = "KIND_GPU"
    else:
        lines.append('backend: "python"')
        score = 'output [\n  { name: "score" data_type: TYPE_FP32 dims: [ 1 ] },'
        kind = "KIND_CPU"
    lines += [
        f"max_batch_size: {max_batch_size or contract.max_batch_size}",
        "version_policy: { latest: { num_versions: 1 } }",
        "input [",
        f'  {{ name: "image" data_type: TYPE_UINT8 dims: {_dims((height, width, channels))} }}',
        "]",
        score,
        f'  {{ name: "anomaly_map" data_type: TYPE_FP32 dims: {_dims((1, height, width))} }}',
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
        lines.append('parameters { key: "intra_op_threads" value: { string_value: "0" } }')
    # Thresholds ride along so a plant client can label without model.json (still not in
    # the graph: a request may override them).
    for key, value in (("image", contract.image_threshold), ("pixel", contract.pixel_threshold)):
        lines.append(
            f'parameters {{ key: "{key}_threshold" value: {{ string_value: "{value!r}" }} }}'
        )
    lines += [
        "model_warmup [ {",
        '  name: "zeros" batch_size: 1',
        '  inputs { key: "image" value: { data_type: TYPE_UINT8 '
        f"dims: {_dims((height, width, channels))} zero_data: true }} }}",
        "} ]",
    ]
    return "\n".join(lines) + "\n"


LOCK_FILE = ".deploy.lock"  # Triton reads only sub-folders of a model folder: files are safe


@contextlib.contextmanager
def model_lock(repository: str | Path, name: str) -> Iterator[Path]:
    """Hold an exclusive lock on one model of the repository (deploys of a variant queue)."""
    model_dir = Path(repository) / name
    model_dir.mkdir(parents=True, exist_ok=True)
    with open(model_dir / LOCK_FILE, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield model_dir
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def latest_version(model_dir: str | Path) -> Path | None:
    """The highest integer version folder of a model (what `latest: 1` makes Triton serve)."""
    versions = [p for p in Path(model_dir).glob("*") if p.is_dir() and p.name.isdigit()]
    return max(versions, key=lambda p: int(p.name), default=None)


def _write_atomically(path: Path, text: str) -> None:
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.",
                                     delete=False) as handle:  # fmt: skip
        handle.write(text)
    os.replace(handle.name, path)


def next_version(model_dir: Path) -> int:
    """One more than the highest integer version folder already there (1 when none)."""
    versions = [int(p.name) for p in model_dir.glob("*") if p.is_dir() and p.name.isdigit()]
    return max(versions, default=0) + 1


def add_model(
    repository: str | Path,
    name: str,
    export_dir: str | Path,
    flavour: Flavour = "python",
    **config: object,
) -> Path:
    """Copy one exported model into `repository/name/<next version>/`; returns that folder."""
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"invalid Triton model name {name!r}")
    export_dir = Path(export_dir)
    contract = load_contract(export_dir)
    onnx_file = export_dir / contract.onnx["file"]
    if not onnx_file.is_file():
        raise FileNotFoundError(f"{onnx_file}: missing (named by {export_dir / CONTRACT_FILE})")
    config_text = model_config(name, contract, flavour, **config)  # refuse bad args first
    model_dir = Path(repository) / name
    model_dir.mkdir(parents=True, exist_ok=True)
    # Triton skips version folders whose name is not an integer: stage under a dot name.
    staging = model_dir / f".staging-{uuid.uuid4().hex}"
    version_dir = model_dir / str(next_version(model_dir))
    config_path, config_old = model_dir / "config.pbtxt", None
    if config_path.is_file():
        config_old = config_path.read_text()
    try:
        staging.mkdir()
        for source in sorted(export_dir.glob("model.onnx*")):
            shutil.copy2(source, staging / source.name)
        shutil.copy2(export_dir / CONTRACT_FILE, staging / CONTRACT_FILE)
        if flavour == "python":
            shutil.copy2(PYTHON_MODEL, staging / "model.py")
        staging.rename(version_dir)  # fails rather than merge if the folder appeared
        try:
            _write_atomically(config_path, config_text)
            _write_atomically(model_dir / CONTRACT_FILE, (export_dir / CONTRACT_FILE).read_text())
        except BaseException:
            shutil.rmtree(version_dir, ignore_errors=True)
            if config_old is not None:
                _write_atomically(config_path, config_old)
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
