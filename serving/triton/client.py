"""The plant client: images to scores over Triton's HTTP v2 protocol (tritonclient.http).

Images are decoded and resized exactly as in training (serving/images/decode.py), sent in
batches, retried with exponential backoff when the connection fails (never when the
server rejects a request: a 4xx will not get better), and each image that cannot be
scored gets its own error instead of failing the rest.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from anomalyops.serving.contract.labels import label
from anomalyops.serving.contract.model import INPUT_NAME, MAP_OUTPUT, SCORE_OUTPUT
from anomalyops.serving.images.decode import ImageDecodeError, content_box, decode_image, resize
from anomalyops.serving.images.statistics import image_statistics
from anomalyops.serving.retries import call_with_retries
from anomalyops.serving.triton.served_versions import VersionError

if TYPE_CHECKING:
    from anomalyops.serving.triton.served_versions import ServedVersions

log = logging.getLogger(__name__)
RETRYABLE_STATUS = {"429", "502", "503", "504"}


class InferenceError(RuntimeError):
    """Triton refused or could not answer a request; the message says why.

    UNAVAILABLE: Triton did not answer (down, restarting, 502-504 after the retries), as
    opposed to refusing the request; a server passes that on as 503, not 500.
    """

    def __init__(self, message: str, unavailable: bool = False) -> None:
        super().__init__(message)
        self.unavailable = unavailable


class Inference(NamedTuple):
    scores: np.ndarray
    maps: np.ndarray
    version: str  # the model version Triton says scored the batch


@dataclass
class ImageResult:
    name: str
    score: float | None = None
    label: str | None = None
    anomaly_map: np.ndarray | None = None
    error: str | None = None
    version: str | None = None
    problems: list[str] = field(default_factory=list)  # why the frame is unusable


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
            if _retryable(error):
                down = f"Triton at {self.url} is not answering ({what}: {message}); retry shortly"
                raise InferenceError(down, unavailable=True) from None
            raise InferenceError(f"{what} at {self.url}: {message}") from None

    def config(self) -> dict:
        """Triton's config of the model as it is now (a deploy may change it)."""
        return self._call(f"model {self.model!r} config", self.client.get_model_config, self.model)

    def versions(self) -> list[str]:
        """The versions Triton has loaded for the model."""
        metadata = self._call(
            f"model {self.model!r} metadata", self.client.get_model_metadata, self.model
        )
        return [str(v) for v in metadata.get("versions", [])]

    def metadata(self) -> tuple[tuple[int, int], dict[str, float], bool]:
        """(input height, width), the calibrated thresholds and whether images keep their
        aspect, as the server publishes them (keep_aspect absent: older configs, false)."""
        if self._metadata is None:
            config = self.config()
            dims = [int(d) for d in config["input"][0]["dims"]]
            parameters = config.get("parameters", {})
            thresholds = {
                key.removesuffix("_threshold"): float(value["string_value"])
                for key, value in parameters.items()
                if key.endswith("_threshold")
            }
            keep = parameters.get("keep_aspect", {}).get("string_value", "false") == "true"
            self._metadata = ((dims[0], dims[1]), thresholds, keep)
        return self._metadata

    def infer(self, images: np.ndarray) -> Inference:
        """Raw scores (N), anomaly maps (N×H×W) and the version that answered, for uint8
        N×H×W×3 images (one request: split batches larger than the model's max batch)."""
        tensor = triton_http.InferInput(INPUT_NAME, list(images.shape), "UINT8")
        tensor.set_data_from_numpy(np.ascontiguousarray(images), binary_data=True)
        outputs = [
            triton_http.InferRequestedOutput(name, binary_data=True)
            for name in (SCORE_OUTPUT, MAP_OUTPUT)
        ]
        result = self._call(
            f"infer on {self.model!r}", self.client.infer, self.model, [tensor], outputs=outputs
        )
        version = str(result.get_response().get("model_version", ""))
        return Inference(
            result.as_numpy(SCORE_OUTPUT).reshape(-1), result.as_numpy(MAP_OUTPUT)[:, 0], version
        )

    def score_files(
        self,
        sources: list[str | Path],
        threshold: float | None = None,
        versions: ServedVersions | None = None,
    ) -> list[ImageResult]:
        """One result per source, in order; undecodable or rejected ones carry `error`.

        With VERSIONS (the model's folders in the Triton repository) each batch is labelled
        with the thresholds of the version that answered it, and frames outside its
        training images are labelled 'unusable'; without, the thresholds Triton's config
        publishes apply and frames are not checked.
        """
        size, thresholds, keep_aspect = self.metadata()
        results = [ImageResult(str(source)) for source in sources]
        pending: list[tuple[int, np.ndarray, tuple[int, int]]] = []
        for index, source in enumerate(sources):
            try:
                image = decode_image(source)
                pending.append((index, resize(image, size, keep_aspect), image.shape[:2]))
            except ImageDecodeError as error:
                results[index].error = str(error)
        for start in range(0, len(pending), self.batch_size):
            chunk = pending[start : start + self.batch_size]
            try:
                scores, maps, version = self.infer(np.stack([image for _, image, _ in chunk]))
                served = versions.get(version) if versions else None
            except (InferenceError, VersionError) as error:
                for index, _, _ in chunk:
                    results[index].error = str(error)
                continue
            limit = threshold
            if limit is None:
                limit = served.contract.image_threshold if served else thresholds.get("image")
            for (index, image, source), score, anomaly_map in zip(chunk, scores, maps,
                                                                  strict=True):  # fmt: skip
                result = results[index]
                box = content_box(source, size, keep_aspect)
                result.score, result.anomaly_map = float(score), anomaly_map[box]
                result.version = version
                if served:
                    statistics = image_statistics(image[box])
                    result.problems = served.frames.problems(statistics, source)
                if result.problems or limit is not None:
                    result.label = label(float(score), limit, result.problems)
        return results
