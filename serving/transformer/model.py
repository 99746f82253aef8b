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

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import kserve
import numpy as np
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferRequest

from anomalyops.serving import metrics
from anomalyops.serving.contract.labels import ANOMALOUS, GOOD, label
from anomalyops.serving.images.decode import (
    DecodeLimits,
    Decoder,
    ImageDecodeError,
    content_box,
    png_base64,
)
from anomalyops.serving.images.statistics import image_statistics
from anomalyops.serving.predictions.log import PredictionLog, PredictionRecord
from anomalyops.serving.transformer.protocol import (
    Batch,
    Frame,
    Settings,
    image_suffix,
    v1_frames,
    v2_frames,
    v2_response,
)
from anomalyops.serving.triton.client import InferenceError, TritonClient
from anomalyops.serving.triton.served_versions import ServedVersion, ServedVersions, VersionError

log = logging.getLogger(__name__)


def _rejection(message: str) -> str:
    """A decode refusal as a fixed metric label (the message itself names the file)."""
    if "exceeds" in message or "over the limit" in message or "larger than" in message:
        return "too_large"
    return "bomb" if "bomb" in message else "not_image"


class AnomalyTransformer(kserve.Model):
    """One product variant: decode + resize on the CPU, score on Triton, threshold here.

    KServe's own flow: `preprocess` parses and decodes, `predict` asks Triton, and
    `postprocess` labels, logs and answers in the request's protocol.
    """

    def __init__(
        self,
        name: str,
        triton_url: str,
        repository: str | Path,
        log_path: str | Path,
        settings: Settings | None = None,
        files: str | None = None,
    ) -> None:
        super().__init__(name)
        settings = settings or Settings()
        self.triton_url, self.log_path, self.settings = triton_url, log_path, settings
        self.files = files
        self.decode = Decoder(
            DecodeLimits(settings.max_image_bytes, settings.max_decoded_bytes),
            settings.max_decodes,
        )
        # CPU stages run in a pool the size of the budget, not asyncio's default (CPUs + 4),
        # so a burst of requests cannot crowd out Triton on the same node.
        self.cpu_pool = ThreadPoolExecutor(settings.threads, thread_name_prefix="transformer-cpu")
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
        self.log = self.log or PredictionLog(self.log_path, self.files)
        self.ready = True
        return self.ready

    def load_when_triton_answers(self, interval: float = 2.0) -> None:
        """Retry `load` until Triton answers (the pod stays unready meanwhile)."""
        while not self.ready:
            try:
                self.load()
            except (InferenceError, VersionError) as error:
                log.warning("transformer %r still unready: %s", self.name, error)
                time.sleep(interval)

    async def __call__(self, body: Any, *args: Any, **kwargs: Any) -> Any:
        """KServe's preprocess -> predict -> postprocess, counted by outcome and timed."""
        started, protocol = time.monotonic(), "v2" if isinstance(body, InferRequest) else "v1"
        outcome = "error"
        try:
            result = await super().__call__(body, *args, **kwargs)
            outcome = "ok"
            return result
        except InvalidInput:
            outcome = "rejected"
            raise
        finally:
            metrics.observe_request(self.name, protocol, outcome, time.monotonic() - started)

    async def preprocess(self, payload: Any, headers: dict | None = None) -> Batch:
        """The request's frames, each decoded and resized to the served input size."""
        headers = {key.lower(): value for key, value in (headers or {}).items()}
        if isinstance(payload, InferRequest):
            batch = Batch(v2_frames(payload, headers, self.settings), payload.id, v2=True)
        else:
            batch = Batch(v1_frames(payload, headers, self.settings))
        await asyncio.get_running_loop().run_in_executor(self.cpu_pool, self._decode, batch.frames)
        return batch

    async def predict(self, batch: Batch, headers: dict | None = None, **_: Any) -> Batch:
        """Triton's score and map for every frame, in batches Triton takes."""
        await asyncio.to_thread(self._infer, batch.frames)
        return batch

    async def postprocess(self, batch: Batch, headers: dict | None = None, **_: Any) -> Any:
        """Label and log every frame, then answer in the protocol the request came in."""
        predictions = await asyncio.get_running_loop().run_in_executor(
            self.cpu_pool, self._judge_and_log, batch.frames
        )
        if batch.v2:
            return v2_response(batch.v2_id, self.name, predictions)
        return {"predictions": predictions}

    def _decode(self, frames: list[Frame]) -> None:
        contract = self.current.contract
        for frame in frames:
            try:
                frame.image, frame.source = self.decode.resized(
                    frame.data, frame.where, contract.input_size, contract.keep_aspect
                )
                frame.box = content_box(frame.source, contract.input_size, contract.keep_aspect)
            except ImageDecodeError as error:
                metrics.observe_decode_rejection(self.name, _rejection(str(error)))
                raise InvalidInput(str(error)) from None

    def _infer(self, frames: list[Frame]) -> None:
        for start in range(0, len(frames), self.max_batch):
            chunk = frames[start : start + self.max_batch]
            try:
                scores, maps, number = self.client.infer(np.stack([f.image for f in chunk]))
                served = self.current = self.versions.get(number)
            except InferenceError as error:
                if error.unavailable:  # Triton restarting: the plant should retry (503)
                    raise kserve.errors.ServerNotReady(str(error)) from None
                raise kserve.errors.InferenceError(str(error)) from None
            except VersionError as error:
                raise kserve.errors.InferenceError(str(error)) from None
            for frame, score, anomaly_map in zip(chunk, scores, maps, strict=True):
                frame.score, frame.anomaly_map, frame.version = float(score), anomaly_map, served

    def _judge_and_log(self, frames: list[Frame]) -> list[dict]:
        judged = [self._judge(frame) for frame in frames]
        numbers = self.log.write([record for _, record in judged])
        for _, record in judged:
            metrics.observe_prediction(self.name, record.line, record.model_version, record.label)
        for (prediction, _), number in zip(judged, numbers, strict=True):
            prediction["id"] = number
        return [prediction for prediction, _ in judged]

    def _judge(self, frame: Frame) -> tuple[dict, PredictionRecord]:
        """Label one scored frame with its version's thresholds and training-image bounds."""
        served, score = frame.version, frame.score
        contract = served.contract
        anomaly_map = frame.anomaly_map[frame.box]  # a kept aspect's border is no part
        statistics = image_statistics(frame.image[frame.box])
        problems = served.frames.problems(statistics, frame.source)
        threshold = (frame.override or contract.image_threshold) / frame.sensitivity
        verdict = label(score, threshold, problems)
        mask = np.where(anomaly_map > contract.pixel_threshold, 255, 0).astype(np.uint8)
        keep = self.settings.keep_images
        keep_image = keep == "all" or (keep == "flagged" and verdict != GOOD)
        height, width = frame.source
        prediction = {
            "score": score,
            "normalised_score": score / contract.image_threshold,
            "threshold": threshold,
            "label": verdict,
            "problems": problems,
            "model_version": served.number,
            "mask_png": png_base64(mask),
        }
        record = PredictionRecord(
            self.name, score, threshold, verdict, **statistics, source_size=f"{width}x{height}",
            model_version=served.number, model_sha256=served.sha256, line=frame.line,
            image=frame.data if keep_image else None, image_suffix=image_suffix(frame.data),
            anomaly_map=anomaly_map if verdict == ANOMALOUS else None,
        )  # fmt: skip
        return prediction, record
