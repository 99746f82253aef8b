"""The plant client: images to scores over Triton's HTTP v2 protocol (tritonclient.http).

Images are decoded and resized exactly as in training (serving/imaging.py), sent in
batches, retried with exponential backoff when the connection fails (never when the
server rejects a request: a 4xx will not get better), and each image that cannot be
scored gets its own error instead of failing the rest.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from anomalyops.serving.imaging import ImageDecodeError, load_image
from anomalyops.serving.retries import call_with_retries

log = logging.getLogger(__name__)
RETRYABLE_STATUS = {"429", "502", "503", "504"}


class InferenceError(RuntimeError):
    """Triton refused or could not answer a request; the message says why."""


@dataclass
class ImageResult:
    name: str
    score: float | None = None
    label: str | None = None
    anomaly_map: np.ndarray | None = None
    error: str | None = None


def _retryable(error: Exception) -> bool:
    if isinstance(error, InferenceServerException):
        return error.status() is None or str(error.status()) in RETRYABLE_STATUS
    return isinstance(error, OSError | ConnectionError | TimeoutError)


class TritonClient:
    """Score images against one Triton model; thresholds come from its config.pbtxt."""

    def __init__(
        self,
        url: str,
        model: str,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.5,
        batch_size: int = 8,
    ) -> None:
        self.url = url.removeprefix("http://")
        self.model = model
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self.batch_size = batch_size
        self.client = triton_http.InferenceServerClient(
            self.url, connection_timeout=timeout, network_timeout=timeout
        )
        self._metadata: tuple[tuple[int, int], dict[str, float]] | None = None

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> TritonClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _call(self, what: str, function, *args, **kwargs):
        """Run a tritonclient call, retrying connection failures with backoff."""
        try:
            return call_with_retries(lambda: function(*args, **kwargs), what,
                                     self.retries + 1, self.backoff, _retryable, log)  # fmt: skip
        except Exception as error:
            message = error.message() if hasattr(error, "message") else str(error)
            raise InferenceError(f"{what} at {self.url}: {message}") from None

    def metadata(self) -> tuple[tuple[int, int], dict[str, float]]:
        """(input height, width) and the calibrated thresholds the server publishes."""
        if self._metadata is None:
            config = self._call(
                f"model {self.model!r} config", self.client.get_model_config, self.model
            )
            dims = [int(d) for d in config["input"][0]["dims"]]
            parameters = config.get("parameters", {})
            thresholds = {
                key.removesuffix("_threshold"): float(value["string_value"])
                for key, value in parameters.items()
                if key.endswith("_threshold")
            }
            self._metadata = ((dims[0], dims[1]), thresholds)
        return self._metadata

    def infer(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw scores (N) and anomaly maps (N×H×W) for uint8 N×H×W×3 images."""
        tensor = triton_http.InferInput("image", list(images.shape), "UINT8")
        tensor.set_data_from_numpy(np.ascontiguousarray(images), binary_data=True)
        outputs = [
            triton_http.InferRequestedOutput(name, binary_data=True)
            for name in ("score", "anomaly_map")
        ]
        result = self._call(
            f"infer on {self.model!r}", self.client.infer, self.model, [tensor], outputs=outputs
        )
        return result.as_numpy("score").reshape(-1), result.as_numpy("anomaly_map")[:, 0]

    def score_files(
        self, sources: list[str | Path], threshold: float | None = None
    ) -> list[ImageResult]:
        """One result per source, in order; undecodable or rejected ones carry `error`."""
        size, thresholds = self.metadata()
        threshold = thresholds.get("image") if threshold is None else threshold
        results = [ImageResult(str(source)) for source in sources]
        pending: list[tuple[int, np.ndarray]] = []
        for index, source in enumerate(sources):
            try:
                pending.append((index, load_image(source, size)))
            except ImageDecodeError as error:
                results[index].error = str(error)
        for start in range(0, len(pending), self.batch_size):
            chunk = pending[start : start + self.batch_size]
            try:
                scores, maps = self.infer(np.stack([image for _, image in chunk]))
            except InferenceError as error:
                for index, _ in chunk:
                    results[index].error = str(error)
                continue
            for (index, _), score, anomaly_map in zip(chunk, scores, maps, strict=True):
                result = results[index]
                result.score, result.anomaly_map = float(score), anomaly_map
                if threshold is not None:
                    result.label = "anomalous" if score > threshold else "good"
        return results
