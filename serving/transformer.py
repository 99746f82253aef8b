"""KServe transformer: image bytes in, score + label + anomaly mask out, via Triton.

Request (v1 protocol), one instance per image::

    {"instances": [{"image": {"b64": "<PNG/JPEG bytes>"},
                    "sensitivity": 1.0,      # optional: threshold / sensitivity is applied
                    "threshold": 12.3}]}     # optional: absolute override of the threshold

Response: {"predictions": [{"score", "normalised_score", "threshold", "label",
"mask_png" (base64 PNG, 255 where the pixel map exceeds the pixel threshold)}]}.
Thresholds come from model.json at request time, never from the graph.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import kserve
import numpy as np
from kserve.errors import InvalidInput

from anomalyops.serving.client import InferenceError, TritonClient
from anomalyops.serving.contract import ModelContract, load_contract
from anomalyops.serving.image_stats import image_statistics
from anomalyops.serving.imaging import ImageDecodeError, decode_image, png_base64, resize
from anomalyops.serving.prediction_log import PredictionLog, PredictionRecord


def _positive(instance: dict, key: str, index: int) -> float | None:
    if not isinstance(instance, dict):
        raise InvalidInput(f"instances[{index}] must be an object with an 'image' field")
    value = instance.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise InvalidInput(f"instances[{index}].{key} must be a positive number, got {value!r}")
    return float(value)


class AnomalyTransformer(kserve.Model):
    """One product variant: decode + resize on the CPU, score on Triton, threshold here."""

    def __init__(self, name: str, triton_url: str, contract: ModelContract, log_path: Path):
        super().__init__(name)
        self.triton_url, self.contract, self.log_path = triton_url, contract, log_path
        self._local = threading.local()
        self.log: PredictionLog | None = None

    @property
    def client(self) -> TritonClient:
        """One client per worker thread: tritonclient.http's gevent pool is thread-bound."""
        if getattr(self._local, "client", None) is None:
            self._local.client = TritonClient(self.triton_url, self.name, retries=2)
        return self._local.client

    def load(self) -> bool:
        self.client.metadata()  # fail at start, not on the first plant request
        self.log = PredictionLog(self.log_path)
        self.ready = True
        return self.ready

    def _decode(self, instance: Any, index: int) -> tuple[np.ndarray, str]:
        if not isinstance(instance, dict) or "image" not in instance:
            raise InvalidInput(f"instances[{index}]: missing field 'image'")
        field = instance["image"]
        encoded = field.get("b64") if isinstance(field, dict) else field
        if not isinstance(encoded, str):
            raise InvalidInput(f"instances[{index}].image must be base64 text or {{'b64': ...}}")
        try:
            data = base64.b64decode(encoded, validate=True)
            image = decode_image(data, f"instances[{index}].image")
        except (binascii.Error, ValueError) as error:
            reason = error if isinstance(error, ImageDecodeError) else f"bad base64 ({error})"
            raise InvalidInput(str(reason)) from None
        height, width = image.shape[:2]
        return resize(image, self.contract.input_size), f"{width}x{height}"

    def _score(self, payload: dict) -> dict:
        instances = payload.get("instances") if isinstance(payload, dict) else None
        if not isinstance(instances, list) or not instances:
            raise InvalidInput("request must be {'instances': [{'image': {'b64': ...}}, ...]}")
        images, sizes, thresholds = [], [], []
        for index, instance in enumerate(instances):
            override = _positive(instance, "threshold", index)
            sensitivity = _positive(instance, "sensitivity", index) or 1.0
            image, size = self._decode(instance, index)
            thresholds.append((override or self.contract.image_threshold) / sensitivity)
            images.append(image)
            sizes.append(size)
        try:
            scores, maps = self.client.infer(np.stack(images))
        except InferenceError as error:
            raise kserve.errors.InferenceError(str(error)) from None
        predictions, records = [], []
        pixel_threshold = self.contract.pixel_threshold
        for image, size, threshold, score, anomaly_map in zip(
            images, sizes, thresholds, scores, maps, strict=True
        ):
            label = "anomalous" if score > threshold else "good"
            mask = np.where(anomaly_map > pixel_threshold, 255, 0).astype(np.uint8)
            predictions.append(
                {
                    "score": float(score),
                    "normalised_score": float(score) / self.contract.image_threshold,
                    "threshold": threshold,
                    "label": label,
                    "mask_png": png_base64(mask),
                }
            )
            records.append(
                PredictionRecord(
                    self.name, float(score), threshold, label, **image_statistics(image),
                    source_size=size, model_version=self.contract.lineage.get("model_version"),
                    model_sha256=self.contract.onnx.get("sha256"),
                )
            )  # fmt: skip
        self.log.write(records)
        return {"predictions": predictions}

    async def predict(self, payload: dict, headers: dict | None = None, **_: Any) -> dict:
        return await asyncio.to_thread(self._score, payload)


class TransformerProcess:
    """`with TransformerProcess(...) as url:` runs the transformer's real ModelServer in a
    subprocess (kserve and tritonclient.grpc cannot share one) until it answers on URL."""

    def __init__(self, name: str, triton_url: str, model_dir: str | Path, log_db: str | Path,
                 http_port: int, startup_timeout: float = 90.0) -> None:  # fmt: skip
        self.command = [
            sys.executable, "-m", "anomalyops.serving.transformer", "--model_name", name,
            "--predictor_host", triton_url, "--model_dir", str(model_dir),
            "--log_db", str(log_db), "--http_port", str(http_port),
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
    parser.add_argument("--model_dir", required=True, help="folder holding model.json")
    parser.add_argument("--log_db", default="predictions.db", help="SQLite prediction log")
    args, _ = parser.parse_known_args(argv)
    model = AnomalyTransformer(
        args.model_name, args.predictor_host, load_contract(args.model_dir), Path(args.log_db)
    )
    model.load()
    kserve.ModelServer(http_port=args.http_port, enable_grpc=False, workers=1).start([model])


if __name__ == "__main__":
    main()
