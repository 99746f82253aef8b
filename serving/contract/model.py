"""The exported-model contract (`model.json`) that serving reads; no training code here.

Training writes it (components/deploy/export.py), every server reads it through `load_contract`,
so a field renamed on one side fails loudly with the field's name, not deep in a request.

Schema (format_version 1)::

    {
      "format_version": 1,
      "kind": "patchcore" | "padim" | ...,
      "input":  {"name": "image", "dtype": "uint8", "layout": "NHWC",
                 "height": H, "width": W, "channels": 3,
                 "keep_aspect": bool},  # optional, false when absent
      "outputs": {"anomaly_map": [1, H, W], "score": []},  # per-image shapes, float32
      "backbone": {"name": str, "weights": str|null, "weights_sha256": str|null},
      "dataset_sha256": str|null,
      "thresholds": {"image": {"threshold": float, ...calibration},
                     "pixel": {"threshold": float, ...calibration}},
      "normalisation": {"method": "threshold_ratio", "image_scale": float,
                        "pixel_scale": float},
      "onnx": {"file": "model.onnx", "opset": int, "sha256": str, "external_data": bool},
      "lineage": {"mlflow_run_id": str|null, "registered_model": str|null,
                  "model_version": str|null, "exported_at": ISO-8601 str,
                  "detector": {...settings as the detector describes itself}},
      "resources": {"scratch_bytes_per_image": int, "max_batch_size": int,  # optional
                    "threads": int}  # optional
    }

`input.keep_aspect` (optional; absent in older exports, read as false): each image is
scaled by one factor to fit the input and centred on black (serving.images.decode.resize),
not stretched; the maps a server returns are cut back to the image's own box.

`resources` (optional; absent in older exports, read as {}): the graph's peak scratch
memory per image (PatchCore's blocked distance matrices) and the largest batch that keeps
it within budget, which the Triton config uses as `max_batch_size` (default 32). A tiled
detector needs no other field: its graph takes the whole working-size image (input
height/width) and tiles inside, so serving sends it exactly as before. `resources.threads`
(optional, absent in older exports) pins the CPU threads of each Triton instance; absent
means auto: the CPUs the server is given, divided by its instance count (serving/threads.py).

Raw scores are what the graph returns; `normalisation` says how to show them on a common
scale (score / image_scale: 1.0 is the calibrated threshold). Thresholds stay out of the
graph so a plant can change its sensitivity per request.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from anomalyops.serving.contract.json_file import read_json_file
from anomalyops.serving.contract.thresholds import ThresholdError, check_thresholds

FORMAT_VERSION = 1
CONTRACT_FILE = "model.json"
ONNX_FILE = "model.onnx"
INPUT_NAME = "image"
MAP_OUTPUT, SCORE_OUTPUT = "anomaly_map", "score"
OUTPUT_NAMES = (MAP_OUTPUT, SCORE_OUTPUT)
DEFAULT_MAX_BATCH = 32


class ContractError(ValueError):
    """model.json is missing, malformed, or lacks a field; the message names which."""


@dataclass(frozen=True)
class ModelContract:
    kind: str
    height: int
    width: int
    channels: int
    backbone: dict[str, Any]
    dataset_sha256: str | None
    thresholds: dict[str, dict[str, Any]]
    normalisation: dict[str, Any]
    onnx: dict[str, Any]
    lineage: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    resources: dict[str, Any] = field(default_factory=dict)
    keep_aspect: bool = False

    @property
    def input_size(self) -> tuple[int, int]:
        return self.height, self.width

    @property
    def image_threshold(self) -> float:
        return float(self.thresholds["image"]["threshold"])

    @property
    def max_batch_size(self) -> int:
        """Triton's max batch: what the export sized from the graph's memory, else 32."""
        return int(self.resources.get("max_batch_size", DEFAULT_MAX_BATCH))

    @property
    def threads(self) -> int | None:
        """Each serving instance's CPU threads when the export pins them; None means auto."""
        return self.resources.get("threads")

    @property
    def pixel_threshold(self) -> float:
        return float(self.thresholds["pixel"]["threshold"])

    def to_dict(self) -> dict[str, Any]:
        body = asdict(self)
        height, width, channels = body.pop("height"), body.pop("width"), body.pop("channels")
        keep_aspect = body.pop("keep_aspect")
        body["input"] = {
            "name": INPUT_NAME,
            "dtype": "uint8",
            "layout": "NHWC",
            "height": height,
            "width": width,
            "channels": channels,
            "keep_aspect": keep_aspect,
        }
        body["outputs"] = {"anomaly_map": [1, height, width], "score": []}
        return body

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / CONTRACT_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path


def _require(body: dict, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(body, dict) or key not in body:
        raise ContractError(f"{where}: missing field {key!r}")
    value = body[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise ContractError(f"{where}: field {key!r} must be {names}, got {value!r}")
    return value


def parse_contract(body: Any, where: str = CONTRACT_FILE) -> ModelContract:
    """Validate a decoded model.json; every error names the offending field."""
    if not isinstance(body, dict):
        raise ContractError(f"{where}: expected a JSON object, got {type(body).__name__}")
    version = _require(body, "format_version", int, where)
    if version != FORMAT_VERSION:
        raise ContractError(f"{where}: format_version {version} unsupported (want 1)")
    spec = _require(body, "input", dict, where)
    size = {}
    for key in ("height", "width", "channels"):
        size[key] = _require(spec, key, int, f"{where} input")
        if size[key] <= 0:
            raise ContractError(f"{where}: input.{key} must be positive, got {size[key]}")
    keep_aspect = spec.get("keep_aspect", False)
    if not isinstance(keep_aspect, bool):
        raise ContractError(f"{where}: input.keep_aspect must be bool, got {keep_aspect!r}")
    if spec.get("dtype", "uint8") != "uint8":
        raise ContractError(f"{where}: input.dtype must be 'uint8', got {spec['dtype']!r}")
    thresholds = _require(body, "thresholds", dict, where)
    for level in ("image", "pixel"):
        calibration = _require(thresholds, level, dict, f"{where} thresholds")
        _require(calibration, "threshold", (int, float), f"{where} thresholds.{level}")
    try:  # finite and above 0 (a NaN threshold labelled every defect 'good')
        check_thresholds(thresholds, where)
    except ThresholdError as error:
        raise ContractError(str(error)) from None
    onnx = _require(body, "onnx", dict, where)
    _require(onnx, "file", str, f"{where} onnx")
    resources = body.get("resources") or {}
    batch = resources.get("max_batch_size", DEFAULT_MAX_BATCH) if isinstance(resources, dict) else 0
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise ContractError(f"{where}: resources.max_batch_size must be a positive int")
    threads = resources.get("threads", 1)
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise ContractError(f"{where}: resources.threads must be a positive int when given")
    dataset = body.get("dataset_sha256")
    if dataset is not None and not isinstance(dataset, str):
        raise ContractError(f"{where}: field 'dataset_sha256' must be str or null")
    return ModelContract(
        kind=_require(body, "kind", str, where),
        backbone=_require(body, "backbone", dict, where),
        dataset_sha256=dataset,
        thresholds=thresholds,
        normalisation=_require(body, "normalisation", dict, where),
        onnx=onnx,
        lineage=body.get("lineage") or {},
        format_version=version,
        resources=resources,
        keep_aspect=keep_aspect,
        **size,
    )


def verify_model_files(directory: str | Path, contract: ModelContract | None = None) -> Path:
    """The ONNX file of an exported directory, checked against model.json's sha256.

    Called before a model is deployed (repository.add_model): a replaced or damaged
    model.onnx must not be served under another model's thresholds and lineage.
    """
    from anomalyops.serving.contract.checksums import ChecksumError, verify_sha256

    directory = Path(directory)
    contract = contract or load_contract(directory)
    onnx_file = directory / contract.onnx["file"]
    if not onnx_file.is_file():
        raise ContractError(f"{onnx_file}: missing (named by {directory / CONTRACT_FILE})")
    try:
        verify_sha256(onnx_file, contract.onnx.get("sha256"), directory / CONTRACT_FILE)
    except ChecksumError as error:
        raise ContractError(str(error)) from None
    return onnx_file


def load_contract(directory: str | Path) -> ModelContract:
    """The contract of an exported model directory (or a model.json path)."""
    path = Path(directory)
    if path.is_dir():
        path = path / CONTRACT_FILE
    body = read_json_file(path, ContractError, f"missing; is {path.parent} an exported model?")
    return parse_contract(body, str(path))
