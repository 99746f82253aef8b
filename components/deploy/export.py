"""The export step: a trained detector to `model.onnx` + `model.json` (the serving contract).

The graph is the detector's own `model.forward` (uint8 images in, anomaly map and score
out, nearest-neighbour search as matrix products), so any ONNX backend runs it and it
scores like the in-process detector; tests/components/deploy/test_export.py proves that.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from anomalyops.components.detectors import Detector
from anomalyops.components.hashing import file_sha256
from anomalyops.components.training.model_dir import ModelOutput
from anomalyops.components.training.train import TRAINING_FILE, load_trained
from anomalyops.serving.contract.model import (
    FORMAT_VERSION,
    INPUT_NAME,
    ONNX_FILE,
    OUTPUT_NAMES,
    ModelContract,
    load_contract,
)
from anomalyops.serving.contract.reference import REFERENCE_FILE

OPSET = 17
# Protobuf cannot hold more than 2 GiB: past this, tensors go to model.onnx.data.
EXTERNAL_DATA_BYTES = 2**31 - 64 * 2**20
DATA_FILE = ONNX_FILE + ".data"
LINEAGE_FIELDS = ("mlflow_run_id", "registered_model", "model_version")


def _tensor_bytes(model: torch.nn.Module) -> int:
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def export_onnx(detector: Detector, path: Path, external_data_bytes: int) -> bool:
    """Write the detector's forward graph to PATH (in a fresh folder); True when weights
    went to external data. The scratch copy lies beside PATH, so a full disk names it."""
    height, width = detector.config.input_size
    example = torch.zeros(2, height, width, 3, dtype=torch.uint8)
    external = _tensor_bytes(detector.model) > external_data_bytes
    with tempfile.TemporaryDirectory(prefix=".scratch-", dir=path.parent) as scratch:
        raw = Path(scratch) / ONNX_FILE
        with torch.no_grad(), warnings.catch_warnings():
            # The TorchScript exporter warns about every shape it cannot fold; all benign.
            warnings.simplefilter("ignore", UserWarning)
            torch.onnx.export(
                detector.model.eval(),
                (example,),
                str(raw),
                input_names=[INPUT_NAME],
                output_names=list(OUTPUT_NAMES),
                dynamic_axes={name: {0: "batch"} for name in (INPUT_NAME, *OUTPUT_NAMES)},
                opset_version=OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
        graph = onnx.load(str(raw), load_external_data=True)
        onnx.save_model(
            graph,
            str(path),
            save_as_external_data=external,
            all_tensors_to_one_file=True,
            location=DATA_FILE,
            size_threshold=1024,
            convert_attribute=True,  # constants too (a coarse scale's resize weights)
        )
    onnx.checker.check_model(str(path))
    return external


def _normalisation(thresholds: dict[str, Any]) -> dict[str, Any]:
    return {
        "method": "threshold_ratio",
        "image_scale": float(thresholds["image"]["threshold"]),
        "pixel_scale": float(thresholds["pixel"]["threshold"]),
    }


def export(
    detector_or_model_dir: Detector | str | Path,
    out_dir: str | Path,
    thresholds: dict[str, Any] | None = None,
    lineage: dict[str, Any] | None = None,
    dataset_sha256: str | None = None,
    external_data_bytes: int = EXTERNAL_DATA_BYTES,
    force: bool = False,
    threads: int | None = None,
) -> ModelContract:
    """Export a fitted detector (or a `train` output directory) to `out_dir`.

    From a directory, thresholds and the dataset hash come from its thresholds.json and
    training.json, and its reference.json (what production should look like) is copied;
    from a detector object they must be passed. Lineage fields not known yet (MLflow run,
    registered model, version) are written as null. OUT_DIR is written whole or not at
    all (ModelOutput): an existing export is replaced only with `force`, a trained model's
    folder (the source included) never. THREADS pins each serving instance's CPU threads
    in model.json; left out, servers divide the CPUs they are given (serving/threads.py).
    """
    if threads is not None and threads < 1:
        raise ValueError(f"export: threads must be at least 1, got {threads}")
    source = detector_or_model_dir
    model_dir = None if isinstance(source, Detector) else Path(source)
    target = ModelOutput(out_dir, force, protect=[model_dir] if model_dir else [], kind="exported")
    if model_dir is None:
        detector = source
        if thresholds is None:
            raise ValueError("export: thresholds are required when exporting a detector object")
    else:
        detector, saved = load_trained(model_dir)
        thresholds = thresholds or saved
        training = model_dir / TRAINING_FILE
        if dataset_sha256 is None and training.is_file():
            dataset_sha256 = json.loads(training.read_text()).get("dataset_sha256")
    if not detector.fitted:
        raise RuntimeError(f"export: {detector.kind} is not fitted")
    for level in ("image", "pixel"):
        if "threshold" not in (thresholds.get(level) or {}):
            raise ValueError(f"export: thresholds.{level}.threshold is missing")
    with target as staging:
        contract = _write_export(detector, staging, thresholds, lineage, dataset_sha256,
                                 external_data_bytes, threads)  # fmt: skip
        if model_dir is not None and (model_dir / REFERENCE_FILE).is_file():
            shutil.copyfile(model_dir / REFERENCE_FILE, staging / REFERENCE_FILE)
    return contract


def _write_export(
    detector: Detector,
    out_dir: Path,
    thresholds: dict[str, Any],
    lineage: dict[str, Any] | None,
    dataset_sha256: str | None,
    external_data_bytes: int,
    threads: int | None,
) -> ModelContract:
    """model.onnx and model.json into OUT_DIR (a fresh staging folder)."""
    onnx_path = out_dir / ONNX_FILE
    external = export_onnx(detector, onnx_path, external_data_bytes)
    description = detector.describe()
    height, width = detector.config.input_size
    unknown = {key: None for key in LINEAGE_FIELDS}
    contract = ModelContract(
        kind=detector.kind,
        height=int(height),
        width=int(width),
        channels=3,
        backbone={
            "name": detector.config.backbone,
            "weights": description.get("backbone_weights"),
            "weights_sha256": description.get("backbone_weights_sha256"),
        },
        dataset_sha256=dataset_sha256,
        thresholds=json.loads(json.dumps(thresholds, default=_json_default)),
        normalisation=_normalisation(thresholds),
        onnx={
            "file": ONNX_FILE,
            "opset": OPSET,
            "sha256": file_sha256(onnx_path),
            "external_data": external,
        },
        lineage={
            **unknown,
            **(lineage or {}),
            "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "detector": json.loads(json.dumps(description, default=_json_default)),
        },
        format_version=FORMAT_VERSION,
        resources=_resources(detector) | ({} if threads is None else {"threads": threads}),
        keep_aspect=bool(detector.config.keep_aspect),
    )
    contract.save(out_dir)
    return contract


def _resources(detector: Detector) -> dict[str, int]:
    """Scratch memory per image and the Triton max batch it allows (PatchCore's blocks)."""
    model = detector.model
    if not hasattr(model, "max_batch_size"):
        return {}
    return {
        "scratch_bytes_per_image": int(model.scratch_bytes_per_image()),
        "max_batch_size": int(model.max_batch_size()),
    }


def stamp_lineage(export_dir: str | Path, **lineage: str | None) -> ModelContract:
    """Rewrite model.json's lineage (MLflow run, registered model, version) in place.

    Export runs before registration, so the version a model.json names is only known
    later; the rest of the contract (and model.onnx) is left exactly as exported.
    """
    unknown = set(lineage) - set(LINEAGE_FIELDS)
    if unknown:
        raise ValueError(f"stamp_lineage: unknown lineage fields {sorted(unknown)}")
    contract = load_contract(export_dir)
    stamped = dataclasses.replace(contract, lineage={**contract.lineage, **lineage})
    stamped.save(export_dir)
    return stamped


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
