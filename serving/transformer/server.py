"""The transformer's server: KServe's real ModelServer on a chosen address with a body cap,
its command line, and a subprocess harness for tests and benchmarks."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import kserve
from kserve.errors import InvalidInput

from anomalyops.serving.threads import Budget, cpu_budget
from anomalyops.serving.transformer import model as transformer_model
from anomalyops.serving.transformer.model import AnomalyTransformer
from anomalyops.serving.transformer.protocol import KEEP_IMAGES, Settings
from anomalyops.serving.triton.client import InferenceError
from anomalyops.serving.triton.served_versions import VersionError


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
    """kserve's ModelServer on a chosen address: kserve 0.21 always binds 0.0.0.0.

    It also registers a model that is not ready yet: kserve 0.21's
    `ModelServer._register_and_check_atleast_one_model_is_ready` (kserve/model_server.py)
    registers only ready models and raises NoModelReady otherwise, so a transformer
    starting before Triton would exit; registered unready, it answers 503 on its ready
    endpoint and on predict (kserve's dataplane raises ModelNotReady) until it loads.
    """

    def _register_and_check_atleast_one_model_is_ready(self, models: list) -> None:
        for model in models:
            self.register_model(model)
            model.enable_latency_logging = self.enable_latency_logging
            if model.ready:  # kserve's Model.start() only sets ready = True (kserve/model.py)
                model.start()

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
                # kserve answers 503 for a registered, unready model (errors.ModelNotReady)
                return response.status == 200 and json.loads(response.read()).get("ready") is True
        except (urllib.error.URLError, OSError, ValueError):
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


def transformer_budget(requested: int | None, small: int) -> Budget:
    """REQUESTED threads, else a small share: Triton scores on the same CPUs, the
    transformer only decodes, thresholds and encodes masks (serving/threads.py)."""
    budget = cpu_budget(requested)
    if requested is not None or budget.threads <= small:
        return budget
    return Budget(small, f"the transformer's share of {budget.source}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=transformer_model.__doc__,
        parents=[kserve.model_server.parser],
    )
    parser.add_argument("--model_repository", required=True,
                        help="the Triton model repository (mounted or downloaded): each "
                        "version's model.json and reference.json are read from it")  # fmt: skip
    parser.add_argument("--log_db", default="predictions.db",
                        help="prediction log: a SQLite path or a database URL "
                        "(sqlite:///..., postgresql://...)")  # fmt: skip
    parser.add_argument("--log_files", default=os.environ.get("ANOMALYOPS_PREDICTION_FILES"),
                        help="where kept images and maps go: a folder or s3://bucket/prefix "
                        "(default: beside a SQLite log; needed with a database URL)")  # fmt: skip
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
    parser.add_argument("--threads", type=int,
                        help="CPU threads for decoding, masks and the log (default: "
                        f"{defaults.threads}, fewer where fewer CPUs are given)")  # fmt: skip
    args, _ = parser.parse_known_args(argv)
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    budget = transformer_budget(args.threads, defaults.threads)
    print(f"transformer {args.model_name!r}: {budget.threads} CPU threads ({budget.source})",
          file=sys.stderr, flush=True)  # fmt: skip
    settings = Settings(
        int(args.max_image_mb * 2**20), int(args.max_decoded_mb * 2**20), args.max_decodes,
        args.max_instances, args.keep_images, budget.threads,
    )  # fmt: skip
    model = AnomalyTransformer(args.model_name, args.predictor_host, args.model_repository,
                               args.log_db, settings, files=args.log_files)  # fmt: skip
    try:
        model.load()
    except InferenceError as error:
        if not error.unavailable:
            print(f"error: transformer {args.model_name!r} not started: {error}", file=sys.stderr)
            sys.exit(2)
        # Triton not up yet (a pod starting beside it): serve unready, load when it answers.
        print(f"transformer {args.model_name!r} unready until Triton answers: {error}",
              file=sys.stderr, flush=True)  # fmt: skip
        threading.Thread(target=model.load_when_triton_answers, daemon=True).start()
    except VersionError as error:
        print(f"error: transformer {args.model_name!r} not started: {error}", file=sys.stderr)
        sys.exit(2)
    BoundModelServer(
        args.bind_address, int(args.max_body_mb * 2**20), http_port=args.http_port,
        enable_grpc=False, workers=1,
    ).start([model])  # fmt: skip
