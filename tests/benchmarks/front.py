"""Latency the front adds: one 256×256 weld image scored on the bundled Triton, direct and
through serving/triton/front.py, interleaved in one sitting (timings here vary ±50 % run to run).
Both run as `anomalyops serve` runs them (its own process), not in this one, whose GIL
the client would share.

    .venv/bin/python tests/benchmarks/front.py [--requests 100]

Prints median and p90 per path and writes tests/benchmarks/results/front.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tritonclient.http as triton_http

from anomalyops.components.deploy.export import export
from anomalyops.components.training.train import train
from anomalyops.serving.images.decode import load_image
from anomalyops.serving.ports import free_port
from anomalyops.serving.triton.repository import build_repository

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("ANOMALYOPS_DATA", REPO.parent / "shared" / "data"))
WELD = DATA / "battery_weld" / "weld"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-front-"))
    train(WELD, work / "model", "patchcore", {"coreset_ratio": 0.01}, progress=False)
    export(work / "model", work / "export")
    repo = build_repository(work / "repository", {"weld": work / "export"})
    image = load_image(sorted((WELD / "test" / "good").glob("*"))[0], (256, 256))[None]
    port, triton_port = free_port(), free_port()
    command = [sys.executable, "-m", "anomalyops.pipelines.cli", "serve", "--repository",
               str(repo), "--port", str(port), "--triton-port", str(triton_port)]  # fmt: skip
    serve = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        while "plants:" not in serve.stdout.readline():
            if serve.poll() is not None:
                raise SystemExit("anomalyops serve did not start")
        clients = {
            "direct": triton_http.InferenceServerClient(f"127.0.0.1:{triton_port}"),
            "front": triton_http.InferenceServerClient(f"127.0.0.1:{port}"),
        }
        tensor = triton_http.InferInput("image", list(image.shape), "UINT8")
        tensor.set_data_from_numpy(image)
        times: dict[str, list[float]] = {name: [] for name in clients}
        for _ in range(5):  # warm both paths
            for client in clients.values():
                client.infer("weld", [tensor])
        for _ in range(args.requests):
            for name, client in clients.items():
                started = time.perf_counter()
                client.infer("weld", [tensor])
                times[name].append((time.perf_counter() - started) * 1000)
    finally:
        serve.terminate()
        serve.wait(60)
    results = {
        name: {
            "median_ms": round(statistics.median(values), 2),
            "p90_ms": round(statistics.quantiles(values, n=10)[-1], 2),
            "requests": len(values),
        }
        for name, values in times.items()
    }
    results["added_median_ms"] = round(
        results["front"]["median_ms"] - results["direct"]["median_ms"], 2
    )
    results["conditions"] = "1×256×256×3 uint8, binary tensors, PatchCore 1 %, python backend, CPU"
    for name in clients:
        row = results[name]
        print(f"{name:7s} median {row['median_ms']:7.2f} ms  p90 {row['p90_ms']:7.2f} ms")
    print(f"front adds {results['added_median_ms']:.2f} ms (median)")
    out = REPO / "tests" / "benchmarks" / "results" / "front.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"results: {out}")


if __name__ == "__main__":
    main()
