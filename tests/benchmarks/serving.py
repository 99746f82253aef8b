"""Load benchmark: concurrent plant clients against the local Triton (python flavour, CPU).

    .venv/bin/python tests/benchmarks/serving.py [--export DIR] [--seconds 20] [--clients 4]
        [--paths triton transformer]

Two paths, measured in one sitting (timings here vary ±50 % between sittings):
- `triton`: raw uint8 tensors over tritonclient.http (what a plant client sends);
- `transformer`: PNG bytes (the weld test images as stored) posted to the KServe
  transformer's real ModelServer, which decodes, resizes, calls the same Triton,
  thresholds, encodes the mask PNG and logs the prediction to SQLite.
Without --export it trains a small PatchCore on weld and exports it. Prints throughput,
p50/p95/p99 latency and errors; writes tests/benchmarks/results/serving.json (a path not
run keeps its previous numbers). CPU only: the GPU (onnxruntime flavour, TensorRT)
numbers need a GPU machine.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import platform
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np

from anomalyops.serving.images.decode import load_image
from anomalyops.serving.ports import free_port
from anomalyops.serving.transformer.server import TransformerProcess
from anomalyops.serving.triton.client import TritonClient
from anomalyops.serving.triton.repository import build_repository
from anomalyops.serving.triton.server import TritonServer

ROOT = Path(__file__).resolve().parents[2]
WELD = (
    Path(os.environ.get("ANOMALYOPS_DATA", ROOT.parent / "shared" / "data")) / "battery_weld/weld"
)
RESULTS = Path(__file__).with_name("results") / "serving.json"


def exported_model(workdir: Path, coreset: float) -> Path:
    from anomalyops.components.deploy.export import export
    from anomalyops.components.training.train import train

    train(WELD, workdir / "trained", "patchcore", {"coreset_ratio": coreset}, progress=False)
    export(workdir / "trained", workdir / "export")
    return workdir / "export"


# A sender factory: opened once per client thread, yields "send one request" (raises on error).
Sender = Callable[[], contextlib.AbstractContextManager[Callable[[], None]]]


def triton_sender(url: str, images: np.ndarray) -> Sender:
    """Raw uint8 tensors straight to Triton, as the plant client sends them."""

    @contextlib.contextmanager
    def open_client() -> Iterator[Callable[[], None]]:
        with TritonClient(url, "weld", retries=0) as client:
            yield lambda: client.infer(images)

    return open_client


def transformer_sender(url: str, encoded: list[bytes]) -> Sender:
    """PNG bytes to the KServe transformer (v1 protocol), one instance per image."""
    body = {"instances": [{"image": {"b64": base64.b64encode(b).decode()}} for b in encoded]}

    @contextlib.contextmanager
    def open_client() -> Iterator[Callable[[], None]]:
        with httpx.Client(timeout=60) as client:

            def send() -> None:
                response = client.post(f"{url}:predict", json=body)
                if response.status_code != 200:
                    raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
                if len(response.json()["predictions"]) != len(encoded):
                    raise RuntimeError("wrong number of predictions")

            yield send

    return open_client


def drive(sender: Sender, batch: int, seconds: float, clients: int) -> dict:
    """`clients` threads send one BATCH-image request each, back to back, for `seconds`."""
    latencies: list[float] = []
    errors: list[str] = []
    lock, stop = threading.Lock(), time.monotonic() + seconds

    def worker() -> None:
        with sender() as send:
            while time.monotonic() < stop:
                started = time.perf_counter()
                try:
                    send()
                except Exception as error:
                    with lock:
                        errors.append(str(error))
                    continue
                with lock:
                    latencies.append(time.perf_counter() - started)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    ms = np.asarray(latencies) * 1000
    return {
        "batch": batch,
        "clients": clients,
        "seconds": round(elapsed, 2),
        "requests": len(latencies),
        "errors": len(errors),
        "images_per_s": round(len(latencies) * batch / elapsed, 2),
        "p50_ms": round(float(np.percentile(ms, 50)), 1) if len(ms) else None,
        "p95_ms": round(float(np.percentile(ms, 95)), 1) if len(ms) else None,
        "p99_ms": round(float(np.percentile(ms, 99)), 1) if len(ms) else None,
    }


PATHS = {
    "triton": "triton python backend (onnxruntime CPU), uint8 tensors over tritonclient.http",
    "transformer": "KServe ModelServer transformer (PNG decode + resize, threshold, mask PNG, "
    "SQLite prediction log) -> same Triton over HTTP v2",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--export", type=Path, help="exported model dir (default: train one)")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--paths", nargs="+", choices=list(PATHS), default=list(PATHS))
    parser.add_argument("--coreset", type=float, default=0.1, help="bank ratio (default: the "
                        "shipped 10 %%)")  # fmt: skip
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    export_dir = args.export or exported_model(workdir, args.coreset)
    repo = build_repository(workdir / "repository", {"weld": export_dir}, "python")
    paths = sorted((WELD / "test" / "good").glob("*"))[: max(args.batches)]
    pool = np.stack([load_image(p, (256, 256)) for p in paths])
    encoded = [p.read_bytes() for p in paths]
    measured: dict[str, list[dict]] = {}
    with TritonServer(repo) as server, contextlib.ExitStack() as stack:
        senders: dict[str, Callable[[int], Sender]] = {
            "triton": lambda batch: triton_sender(server.url, pool[:batch]),
        }
        if "transformer" in args.paths:
            url = stack.enter_context(
                TransformerProcess("weld", server.url, repo, workdir / "log.db", free_port())
            )
            senders["transformer"] = lambda batch: transformer_sender(url, encoded[:batch])
        for path in args.paths:
            with senders[path](1)() as send:
                send()  # warm: first request loads and warms the model
            for batch in args.batches:
                sender = senders[path](batch)
                run = {"path": path} | drive(sender, batch, args.seconds, args.clients)
                run["load_average_1m"] = round(os.getloadavg()[0], 2)
                print(json.dumps(run), flush=True)
                measured.setdefault(path, []).append(run)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()  # fmt: skip
    previous = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    results = previous.get("paths", {})
    for path, runs in measured.items():
        results[path] = {
            "description": PATHS[path],
            "measured": datetime.now(UTC).date().isoformat(),
            "commit": commit,
            "runs": runs,
        }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "model": "patchcore efficientnet_lite0 256x256, weld, "
                + (f"export {args.export}" if args.export else f"coreset {args.coreset:.0%}"),
                "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared), no GPU",
                "paths": results,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"results in {RESULTS}")


if __name__ == "__main__":
    main()
