"""KServe transformer: image bytes in, score + label + anomaly mask out, via Triton.

v1 request, one instance per image (`POST /v1/models/<variant>:predict`)::

    {"instances": [{"image": {"b64": "<PNG/JPEG/... bytes>"},
                    "sensitivity": 1.0,    # optional, 0.001..1000: threshold / sensitivity
                    "threshold": 12.3,     # optional absolute override, 1e-6..1e9
                    "line": "L2"}]}        # optional production line (or header X-Line)

Response: {"predictions": [{"id" (prediction log id, what a reviewer marks), "score",
"normalised_score", "threshold", "label" ('good' | 'anomalous' | 'unusable'), "problems"
(why unusable), "model_version", "mask_png" (base64 PNG, 255 above the pixel threshold)}]}.

v2 (Open Inference Protocol, `POST /v2/models/<variant>/infer`): one BYTES input named
`image` of shape [N] whose elements are base64-encoded images (kserve 0.21 decodes BYTES
as UTF-8 text, also under the binary extension); optional request parameters
`sensitivity`, `threshold`, `line`. Outputs of shape [N]: score, normalised_score,
threshold (FP32), label, problems, model_version, mask_png (BYTES), id (INT64).

Thresholds, pixel threshold, model identity and unusable-frame bounds come from the
version Triton says scored each batch (serving/triton/served_versions.py), read from
`<model_repository>/<variant>/<N>/` when N first answers; at start every loaded version
is checked against Triton's model config. Batches larger than Triton's max batch are
split. Decoding is capped (encoded bytes, decoded bytes from the header, concurrent
decodes) and the request body too, so a decompression bomb costs neither memory nor time.
Every prediction is logged (serving/predictions/log.py) with its model version, image
statistics, line, the image as received and, for anomalous ones, the anomaly map.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import math
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kserve
import numpy as np
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from anomalyops.serving.contract.model import INPUT_NAME
from anomalyops.serving.images.decode import (
    DecodeLimits,
    Decoder,
    ImageDecodeError,
    png_base64,
    resize,
)
from anomalyops.serving.images.statistics import image_statistics
from anomalyops.serving.predictions.log import PredictionLog, PredictionRecord
from anomalyops.serving.triton.client import InferenceError, TritonClient
from anomalyops.serving.triton.served_versions import (
    ServedVersion,
    ServedVersions,
    VersionError,
)

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
    max_decoded_bytes: int = 48 << 20  # one image's pixels, from its header
    max_decodes: int = 2  # decoded at once (each may take ~4x its decoded bytes briefly)
    max_instances: int = 64  # images per request (split into Triton's max batch)
    keep_images: str = "all"  # which received images the log keeps: all, flagged, none


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


def _suffix(data: bytes) -> str:
    return next((suffix for magic, suffix in _SUFFIXES if data.startswith(magic)), ".bin")


class AnomalyTransformer(kserve.Model):
    """One product variant: decode + resize on the CPU, score on Triton, threshold here."""

    def __init__(
        self,
        name: str,
        triton_url: str,
        repository: str | Path,
        log_path: Path,
        settings: Settings = Settings(),
    ) -> None:
        super().__init__(name)
        self.triton_url, self.log_path, self.settings = triton_url, log_path, settings
        self.decode = Decoder(
            DecodeLimits(settings.max_image_bytes, settings.max_decoded_bytes),
            settings.max_decodes,
        )
        self._local = threading.local()
        self.versions = ServedVersions(repository, name, self._config)
        self.current: ServedVersion | None = None  # the version that answered last
        self.max_batch = 1
        self.log: PredictionLog | None = None

    @property
    def client(self) -> TritonClient:
        """One client per worker thread: tritonclient.http's gevent pool is thread-bound."""
        if getattr(self._local, "client", None) is None:
            self._local.client = TritonClient(self.triton_url, self.name, retries=2)
        return self._local.client

    def _config(self) -> dict:
        """Triton's model config (read when a version is first seen); keeps its max batch."""
        config = self.client.config()
        self.max_batch = max(int(config.get("max_batch_size", 1)), 1)
        return config

    def load(self) -> bool:
        """Check every version Triton has loaded against its config: fail here, not later."""
        numbers = self.client.versions()
        if not numbers:
            raise VersionError(f"Triton at {self.triton_url} has no version of {self.name!r}")
        for number in numbers:
            self.versions.get(number)
        self.current = self.versions.get(max(numbers, key=int))
        self.log = PredictionLog(self.log_path)
        self.ready = True
        return self.ready

    # -- requests -------------------------------------------------------------------------

    def _count(self, count: int, where: str) -> None:
        if not 0 < count <= self.settings.max_instances:
            raise InvalidInput(
                f"{where}: {count} images; send 1 to {self.settings.max_instances} per request"
            )

    def _bytes(self, encoded: Any, where: str) -> bytes:
        if not isinstance(encoded, str):
            raise InvalidInput(f"{where} must be base64 text or {{'b64': ...}}")
        if len(encoded) * 3 // 4 > self.settings.max_image_bytes:
            raise InvalidInput(f"{where}: about {len(encoded) * 3 // 4} encoded bytes exceeds "
                               f"the limit of {self.settings.max_image_bytes}")  # fmt: skip
        try:
            return base64.b64decode(encoded, validate=True)
        except binascii.Error as error:
            raise InvalidInput(f"{where}: bad base64 ({error})") from None

    def _v1_frames(self, payload: Any, headers: dict) -> list[Frame]:
        instances = payload.get("instances") if isinstance(payload, dict) else None
        if not isinstance(instances, list) or not instances:
            raise InvalidInput("request must be {'instances': [{'image': {'b64': ...}}, ...]}")
        self._count(len(instances), "instances")
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
                    self._bytes(encoded, f"{where}.image"), f"{where}.image",
                    _bounded(instance.get("threshold"), f"{where}.threshold", THRESHOLD),
                    _bounded(instance.get("sensitivity"), f"{where}.sensitivity", SENSITIVITY)
                    or 1.0,
                    _line(instance.get("line"), f"{where}.line") or line,
                )
            )  # fmt: skip
        return frames

    def _v2_frames(self, request: InferRequest, headers: dict) -> list[Frame]:
        images = [tensor for tensor in request.inputs if tensor.name == INPUT_NAME]
        if len(images) != 1 or images[0].datatype != "BYTES":
            raise InvalidInput(f"v2 request needs one input {INPUT_NAME!r} of datatype BYTES "
                               "holding base64-encoded images")  # fmt: skip
        data = images[0].data
        if not isinstance(data, list):
            raise InvalidInput(f"inputs[{INPUT_NAME!r}].data must be a list of base64 texts")
        self._count(len(data), f"inputs[{INPUT_NAME!r}]")
        parameters = request.parameters or {}
        override = _bounded(parameters.get("threshold"), "parameters.threshold", THRESHOLD)
        sensitivity = _bounded(parameters.get("sensitivity"), "parameters.sensitivity", SENSITIVITY)
        line = _line(parameters.get("line"), "parameters.line")
        line = line or _line(headers.get("x-line"), "header X-Line") or ""
        where = f"inputs[{INPUT_NAME!r}].data"
        return [
            Frame(self._bytes(item, f"{where}[{index}]"), f"{where}[{index}]", override,
                  sensitivity or 1.0, line)
            for index, item in enumerate(data)
        ]  # fmt: skip

    def _decode(self, frames: list[Frame]) -> None:
        size = self.current.contract.input_size
        for frame in frames:
            try:
                image = self.decode(frame.data, frame.where)
            except ImageDecodeError as error:
                raise InvalidInput(str(error)) from None
            frame.source = image.shape[:2]
            frame.image = resize(image, size)

    def _score(self, frames: list[Frame]) -> list[dict]:
        """Score FRAMES in batches Triton takes; log them; one prediction dict each."""
        self._decode(frames)
        predictions, records = [], []
        for start in range(0, len(frames), self.max_batch):
            chunk = frames[start : start + self.max_batch]
            try:
                scores, maps, number = self.client.infer(np.stack([f.image for f in chunk]))
                served = self.current = self.versions.get(number)
            except (InferenceError, VersionError) as error:
                raise kserve.errors.InferenceError(str(error)) from None
            for frame, score, anomaly_map in zip(chunk, scores, maps, strict=True):
                prediction, record = self._judge(frame, float(score), anomaly_map, served)
                predictions.append(prediction)
                records.append(record)
        for prediction, number in zip(predictions, self.log.write(records), strict=True):
            prediction["id"] = number
        return predictions

    def _judge(
        self, frame: Frame, score: float, anomaly_map: np.ndarray, served: ServedVersion
    ) -> tuple[dict, PredictionRecord]:
        """Label one scored frame with its version's thresholds and training-image bounds."""
        contract = served.contract
        statistics = image_statistics(frame.image)
        problems = served.frames.problems(statistics, frame.source)
        threshold = (frame.override or contract.image_threshold) / frame.sensitivity
        label = "unusable" if problems else "anomalous" if score > threshold else "good"
        mask = np.where(anomaly_map > contract.pixel_threshold, 255, 0).astype(np.uint8)
        keep = self.settings.keep_images
        keep_image = keep == "all" or (keep == "flagged" and label != "good")
        height, width = frame.source
        prediction = {
            "score": score,
            "normalised_score": score / contract.image_threshold,
            "threshold": threshold,
            "label": label,
            "problems": problems,
            "model_version": served.number,
            "mask_png": png_base64(mask),
        }
        record = PredictionRecord(
            self.name, score, threshold, label, **statistics, source_size=f"{width}x{height}",
            model_version=served.number, model_sha256=served.sha256, line=frame.line,
            image=frame.data if keep_image else None, image_suffix=_suffix(frame.data),
            anomaly_map=anomaly_map if label == "anomalous" else None,
        )  # fmt: skip
        return prediction, record

    def _v1(self, payload: Any, headers: dict) -> dict:
        return {"predictions": self._score(self._v1_frames(payload, headers))}

    def _v2(self, request: InferRequest, headers: dict) -> InferResponse:
        predictions = self._score(self._v2_frames(request, headers))
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
            request.id or str(uuid.uuid4()), self.name, outputs,
            model_version=versions.pop() if len(versions) == 1 else None,
        )  # fmt: skip

    async def predict(self, payload: Any, headers: dict | None = None, **_: Any) -> Any:
        headers = {key.lower(): value for key, value in (headers or {}).items()}
        if isinstance(payload, InferRequest):
            return await asyncio.to_thread(self._v2, payload, headers)
        return await asyncio.to_thread(self._v1, payload, headers)


class BodyLimit:
    """ASGI middleware: a request body over LIMIT bytes is refused before kserve reads it
    (413 when Content-Length says so, 400 when a chunked body grows past it)."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            body = (f'{{"error": "request body of {int(declared)} bytes exceeds the limit '
                    f'of {self.limit}"}}').encode()  # fmt: skip
            await send({"type": "http.response.start", "status": 413,
                        "headers": [(b"content-type", b"application/json")]})  # fmt: skip
            return await send({"type": "http.response.body", "body": body})
        received = 0

        async def counted() -> dict:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise InvalidInput(f"request body exceeds the limit of {self.limit} bytes")
            return message

        return await self.app(scope, counted, send)


class BoundModelServer(kserve.ModelServer):
    """kserve's ModelServer on a chosen address: kserve 0.21 always binds 0.0.0.0."""

    def __init__(self, bind_address: str, max_body: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bind_address = bind_address
        kserve.model_server.app.add_middleware(BodyLimit, limit=max_body)

    async def _serve(self) -> None:
        if self._rest_server is not None:  # its uvicorn config is read when serving starts
            self._rest_server.config.host = self.bind_address
        await super()._serve()


class TransformerProcess:
    """`with TransformerProcess(...) as url:` runs the transformer's real ModelServer in a
    subprocess (kserve and tritonclient.grpc cannot share one) until it answers on URL."""

    def __init__(self, name: str, triton_url: str, repository: str | Path, log_db: str | Path,
                 http_port: int, startup_timeout: float = 90.0,
                 options: Sequence[str] = ()) -> None:  # fmt: skip
        self.command = [
            sys.executable, "-m", "anomalyops.serving.transformer", "--model_name", name,
            "--predictor_host", triton_url, "--model_repository", str(repository),
            "--log_db", str(log_db), "--http_port", str(http_port), *options,
        ]  # fmt: skip
        self.url = f"http://127.0.0.1:{http_port}/v1/models/{name}"
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen | None = None
        self._errors = None  # the server's stderr, for the message when it fails to start

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url, timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def __enter__(self) -> str:
        self._errors = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            self.command, stdout=subprocess.DEVNULL, stderr=self._errors
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            if self._ready():
                return self.url
            time.sleep(0.3)
        errors = self._errors
        self._errors = None  # keep it open to read after stopping
        self.__exit__()
        errors.seek(0)
        tail = errors.read().decode(errors="replace")[-2000:]
        errors.close()
        raise RuntimeError(f"transformer did not start on {self.url}:\n{tail}")

    def __exit__(self, *_: object) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._errors is not None and self.process and self.process.poll() is not None:
            self._errors.close()
            self._errors = None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, parents=[kserve.model_server.parser])
    parser.add_argument("--model_repository", required=True,
                        help="the Triton model repository (mounted or downloaded): each "
                        "version's model.json and reference.json are read from it")  # fmt: skip
    parser.add_argument("--log_db", default="predictions.db", help="SQLite prediction log")
    parser.add_argument("--bind_address", default="127.0.0.1",
                        help="address to listen on (a cluster pod sets 0.0.0.0)")  # fmt: skip
    defaults = Settings()
    parser.add_argument("--max_image_mb", type=float, default=defaults.max_image_bytes / 2**20)
    parser.add_argument("--max_decoded_mb", type=float,
                        default=defaults.max_decoded_bytes / 2**20)  # fmt: skip
    parser.add_argument("--max_decodes", type=int, default=defaults.max_decodes)
    parser.add_argument("--max_instances", type=int, default=defaults.max_instances)
    parser.add_argument("--max_body_mb", type=float, default=64.0)
    parser.add_argument("--keep_images", choices=KEEP_IMAGES, default=defaults.keep_images)
    args, _ = parser.parse_known_args(argv)
    settings = Settings(
        int(args.max_image_mb * 2**20), int(args.max_decoded_mb * 2**20), args.max_decodes,
        args.max_instances, args.keep_images,
    )  # fmt: skip
    model = AnomalyTransformer(
        args.model_name, args.predictor_host, args.model_repository, Path(args.log_db), settings
    )
    try:
        model.load()
    except (InferenceError, VersionError) as error:
        print(f"error: transformer {args.model_name!r} not started: {error}", file=sys.stderr)
        sys.exit(2)
    BoundModelServer(
        args.bind_address, int(args.max_body_mb * 2**20), http_port=args.http_port,
        enable_grpc=False, workers=1,
    ).start([model])  # fmt: skip
