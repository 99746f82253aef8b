"""The transformer's wire formats: v1 `instances` and v2 BYTES requests in, predictions out.

Every field is bounded and a bad one is an InvalidInput (400) naming it, before any
image is decoded.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from anomalyops.serving.contract.model import INPUT_NAME

SENSITIVITY = (1e-3, 1e3)  # a factor of 1000 either way; 1e-320 gave "threshold": null
THRESHOLD = (1e-6, 1e9)
LINE = re.compile(r"[\w .:/-]{0,64}")
KEEP_IMAGES = ("all", "flagged", "none")
_SUFFIXES = ((b"\x89PNG", ".png"), (b"\xff\xd8", ".jpg"), (b"BM", ".bmp"), (b"II*\x00", ".tif"),
             (b"MM\x00*", ".tif"), (b"RIFF", ".webp"), (b"GIF8", ".gif"))  # fmt: skip


@dataclass(frozen=True)
class Settings:
    """Serving limits; the command line sets them (see `main`)."""

    max_image_bytes: int = 32 << 20  # one encoded image
    max_decoded_bytes: int = 96 << 20  # one decode at its peak (PIL + RGB), from the header
    max_decodes: int = 2  # decoded at once (each may take ~4x its decoded bytes briefly)
    max_instances: int = 64  # images per request (split into Triton's max batch)
    keep_images: str = "all"  # which received images the log keeps: all, flagged, none
    threads: int = 2  # CPU work (decode, judge, mask PNG, log) at once; Triton needs the rest


@dataclass
class Frame:
    """One image of a request: what the plant sent, and what we made of it."""

    data: bytes
    where: str  # the request field it came from, named in errors
    override: float | None
    sensitivity: float
    line: str
    image: np.ndarray | None = None  # model input (resized)
    source: tuple[int, int] = (0, 0)  # (height, width) as received
    box: tuple[slice, slice] = (slice(None), slice(None))  # the input pixels it fills
    score: float = 0.0  # what Triton answered
    anomaly_map: np.ndarray | None = None
    version: Any = None  # the ServedVersion that scored it


@dataclass
class Batch:
    """A request on its way through preprocess -> predict -> postprocess."""

    frames: list[Frame]
    v2_id: str | None = None  # the v2 request's id; None for a v1 request
    v2: bool = False


def _bounded(value: Any, where: str, limits: tuple[float, float]) -> float | None:
    """A finite number within LIMITS, None when absent; a 400 naming WHERE otherwise."""
    if value is None:
        return None
    low, high = limits
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not low <= value <= high
    ):
        raise InvalidInput(f"{where} must be a number from {low:g} to {high:g}, got {value!r}")
    return float(value)


def _line(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not LINE.fullmatch(value):
        raise InvalidInput(f"{where} must be up to 64 letters, digits or ' .:/-_', got {value!r}")
    return value


def image_suffix(data: bytes) -> str:
    """The file suffix the log stores an image under, from its magic bytes."""
    return next((suffix for magic, suffix in _SUFFIXES if data.startswith(magic)), ".bin")


def _count(count: int, where: str, settings: Settings) -> None:
    if not 0 < count <= settings.max_instances:
        raise InvalidInput(
            f"{where}: {count} images; send 1 to {settings.max_instances} per request"
        )


def _bytes(encoded: Any, where: str, settings: Settings) -> bytes:
    if not isinstance(encoded, str):
        raise InvalidInput(f"{where} must be base64 text or {{'b64': ...}}")
    if len(encoded) * 3 // 4 > settings.max_image_bytes:
        raise InvalidInput(f"{where}: about {len(encoded) * 3 // 4} encoded bytes exceeds "
                           f"the limit of {settings.max_image_bytes}")  # fmt: skip
    try:
        return base64.b64decode(encoded, validate=True)
    except binascii.Error as error:
        raise InvalidInput(f"{where}: bad base64 ({error})") from None


def v1_frames(payload: Any, headers: dict, settings: Settings) -> list[Frame]:
    """The frames of a v1 `instances` request; InvalidInput naming the field otherwise."""
    instances = payload.get("instances") if isinstance(payload, dict) else None
    if not isinstance(instances, list) or not instances:
        raise InvalidInput("request must be {'instances': [{'image': {'b64': ...}}, ...]}")
    _count(len(instances), "instances", settings)
    line = _line(headers.get("x-line"), "header X-Line") or ""
    frames = []
    for index, instance in enumerate(instances):
        where = f"instances[{index}]"
        if not isinstance(instance, dict) or "image" not in instance:
            raise InvalidInput(f"{where}: missing field 'image'")
        field = instance["image"]
        encoded = field.get("b64") if isinstance(field, dict) else field
        frames.append(
            Frame(
                _bytes(encoded, f"{where}.image", settings), f"{where}.image",
                _bounded(instance.get("threshold"), f"{where}.threshold", THRESHOLD),
                _bounded(instance.get("sensitivity"), f"{where}.sensitivity", SENSITIVITY)
                or 1.0,
                _line(instance.get("line"), f"{where}.line") or line,
            )
        )  # fmt: skip
    return frames


def v2_frames(request: InferRequest, headers: dict, settings: Settings) -> list[Frame]:
    """The frames of a v2 request (one BYTES input of base64 images)."""
    images = [tensor for tensor in request.inputs if tensor.name == INPUT_NAME]
    if len(images) != 1 or images[0].datatype != "BYTES":
        raise InvalidInput(f"v2 request needs one input {INPUT_NAME!r} of datatype BYTES "
                           "holding base64-encoded images")  # fmt: skip
    data = images[0].data
    if not isinstance(data, list):
        raise InvalidInput(f"inputs[{INPUT_NAME!r}].data must be a list of base64 texts")
    _count(len(data), f"inputs[{INPUT_NAME!r}]", settings)
    parameters = request.parameters or {}
    override = _bounded(parameters.get("threshold"), "parameters.threshold", THRESHOLD)
    sensitivity = _bounded(parameters.get("sensitivity"), "parameters.sensitivity", SENSITIVITY)
    line = _line(parameters.get("line"), "parameters.line")
    line = line or _line(headers.get("x-line"), "header X-Line") or ""
    where = f"inputs[{INPUT_NAME!r}].data"
    return [
        Frame(_bytes(item, f"{where}[{index}]", settings), f"{where}[{index}]", override,
              sensitivity or 1.0, line)
        for index, item in enumerate(data)
    ]  # fmt: skip


def v2_response(request_id: str | None, model: str, predictions: list[dict]) -> InferResponse:
    """Predictions as v2 outputs, one column per field, each of shape [N]."""
    count = [len(predictions)]

    def column(key: str) -> list:
        return [p[key] for p in predictions]

    outputs = [
        InferOutput(key, count, "FP32", data=column(key))
        for key in ("score", "normalised_score", "threshold")
    ]
    outputs += [
        InferOutput(key, count, "BYTES", data=column(key))
        for key in ("label", "model_version", "mask_png")
    ]
    outputs.append(
        InferOutput("problems", count, "BYTES", data=["; ".join(p) for p in column("problems")])
    )
    outputs.append(InferOutput("id", count, "INT64", data=column("id")))
    versions = set(column("model_version"))
    return InferResponse(
        request_id or str(uuid.uuid4()), model, outputs,
        model_version=versions.pop() if len(versions) == 1 else None,
    )  # fmt: skip
