"""Load benchmark: concurrent plant clients against the local Triton (python flavour, CPU).

    .venv/bin/python tests/benchmarks/serving.py [--export DIR] [--seconds 20] [--clients 4]

Without --export it trains a small PatchCore on weld and exports it. Prints throughput,
p50/p95/p99 latency and errors; writes tests/benchmarks/results/serving.json. CPU only:
the GPU (onnxruntime flavour, TensorRT) numbers need a GPU machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from anomalyops.serving.client import TritonClient
from anomalyops.serving.imaging import load_image
from anomalyops.serving.repository import build_repository
from anomalyops.serving.triton import TritonServer

ROOT = Path(__file__).resolve().parents[2]
WELD = (
    Path(os.environ.get("ANOMALYOPS_DATA", ROOT.parent / "shared" / "data")) / "battery_weld/weld"
)
RESULTS = Path(__file__).with_name("results") / "serving.json"


def exported_model(workdir: Path) -> Path:
    from anomalyops.components.export import export
    from anomalyops.components.train import train

    train(WELD, workdir / "trained", "patchcore", {"coreset_ratio": 0.01}, progress=False)
    export(workdir / "trained", workdir / "export")
    return workdir / "export"


def drive(url: str, images: np.ndarray, seconds: float, clients: int) -> dict:
    """`clients` threads send `images` as one request each, back to back, for `seconds`."""
    latencies: list[float] = []
    errors: list[str] = []
    lock, stop = threading.Lock(), time.monotonic() + seconds

    def worker() -> None:
        with TritonClient(url, "weld", retries=0) as client:
            while time.monotonic() < stop:
                started = time.perf_counter()
                try:
                    client.infer(images)
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
        "batch": len(images),
        "clients": clients,
        "seconds": round(elapsed, 2),
        "requests": len(latencies),
        "errors": len(errors),
        "images_per_s": round(len(latencies) * len(images) / elapsed, 2),
        "p50_ms": round(float(np.percentile(ms, 50)), 1) if len(ms) else None,
        "p95_ms": round(float(np.percentile(ms, 95)), 1) if len(ms) else None,
        "p99_ms": round(float(np.percentile(ms, 99)), 1) if len(ms) else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--export", type=Path, help="exported model dir (default: train one)")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    export_dir = args.export or exported_model(workdir)
    repo = build_repository(workdir / "repository", {"weld": export_dir}, "python")
    paths = sorted((WELD / "test" / "good").glob("*"))
    pool = np.stack([load_image(p, (256, 256)) for p in paths[: max(args.batches)]])
    runs = []
    with TritonServer(repo) as server:
        TritonClient(server.url, "weld").infer(pool[:1])  # warm
        for batch in args.batches:
            run = drive(server.url, pool[:batch], args.seconds, args.clients)
            print(json.dumps(run))
            runs.append(run)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "path": "triton python backend (onnxruntime CPU), tritonclient.http",
                "model": "patchcore efficientnet_lite0 256x256, weld, coreset 1%",
                "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared), no GPU",
                "runs": runs,
            },
            indent=2,
        )
    )
    print(f"results in {RESULTS}")


if __name__ == "__main__":
    main()
