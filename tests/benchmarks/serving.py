"""Load benchmark: concurrent plant clients against the local Triton (python flavour, CPU).

    .venv/bin/python tests/benchmarks/serving.py [--dataset weld|tile|macaroni1]
        [--export DIR] [--seconds 20] [--clients 4] [--paths triton transformer]

Two paths, measured in one sitting (timings here vary ±50 % between sittings):
- `triton`: raw uint8 tensors over tritonclient.http (what a plant client sends);
- `transformer`: PNG bytes (the weld test images as stored) posted to the KServe
  transformer's real ModelServer, which decodes, resizes, calls the same Triton,
  thresholds, encodes the mask PNG and logs the prediction to SQLite.
Without --export it trains PatchCore on --dataset at the shipped defaults (the auto rule:
magnetic_tile's 47 k-entry bank, macaroni1's 8 tiles) and exports it. Prints throughput,
p50/p95/p99 latency and errors; writes tests/benchmarks/results/serving.json for weld,
serving-<dataset>.json for the others (a path not run keeps its previous numbers). CPU
only: the GPU (onnxruntime flavour, TensorRT) numbers need a GPU machine.
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
DATA = Path(os.environ.get("ANOMALYOPS_DATA", ROOT.parent / "shared" / "data"))
DATASETS = {"weld": DATA / "battery_weld" / "weld", "tile": DATA / "magnetic_tile" / "tile",
            "macaroni1": DATA / "visa" / "macaroni1"}  # fmt: skip


def results_file(dataset: str) -> Path:
    name = "serving.json" if dataset == "weld" else f"serving-{dataset}.json"
    return Path(__file__).with_name("results") / name


def exported_model(data: Path, workdir: Path, coreset: float) -> Path:
    from anomalyops.components.deploy.export import export
    from anomalyops.components.training.train import train

    train(data, workdir / "trained", "patchcore", {"coreset_ratio": coreset}, progress=False)
    export(workdir / "trained", workdir / "export")
    return workdir / "export"


def describe(export_dir: Path) -> str:
    """What was served: detector, backbone, working size, tiles and bank entries."""
    import onnx

    from anomalyops.serving.contract.model import load_contract

    contract = load_contract(export_dir)
    config = contract.lineage.get("detector", {}).get("config", {})
    tiles = config.get("tile_size")
    graph = onnx.load(export_dir / "model.onnx", load_external_data=False).graph
    bank = next((i.dims[0] for i in graph.initializer if i.name == "memory_bank"), None)
    ratio = config.get("coreset_ratio")
    return (f"{contract.kind} {contract.backbone.get('name', '?')} "
            f"{contract.width}x{contract.height}"
            + (f", tiles {tiles[0]}x{tiles[1]}" if tiles else "")
            + (f", bank {bank}" if bank else "")
            + (f" ({ratio:.0%})" if ratio else ""))  # fmt: skip


# A sender factory: opened once per client thread, yields "send one request" (raises on error).
Sender = Callable[[], contextlib.AbstractContextManager[Callable[[], None]]]


def triton_sender(url: str, images: np.ndarray, model: str = "weld") -> Sender:
    """Raw uint8 tensors straight to Triton, as the plant client sends them."""

    @contextlib.contextmanager
    def open_client() -> Iterator[Callable[[], None]]:
        with TritonClient(url, model, retries=0) as client:
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
    parser.add_argument("--dataset", choices=list(DATASETS), default="weld")
    parser.add_argument("--export", type=Path, help="exported model dir (default: train one)")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--paths", nargs="+", choices=list(PATHS), default=list(PATHS))
    parser.add_argument("--coreset", type=float, default=0.1, help="bank ratio (default: the "
                        "shipped 10 %%)")  # fmt: skip
    args = parser.parse_args()
    from anomalyops.serving.contract.model import load_contract

    workdir = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    data, name = DATASETS[args.dataset], args.dataset
    export_dir = args.export or exported_model(data, workdir, args.coreset)
    repo = build_repository(workdir / "repository", {name: export_dir}, "python")
    contract = load_contract(export_dir)
    # Triton refuses a batch above the config's max_batch_size (sized from the graph's
    # memory: 5 for an 8-tile image), so such a batch is measured at that size.
    batches = sorted({min(b, contract.max_batch_size) for b in args.batches})
    if batches != sorted(args.batches):
        print(f"batches {args.batches} -> {batches}: max_batch_size {contract.max_batch_size}")
    paths = sorted((data / "test" / "good").glob("*"))[: max(batches)]
    pool = np.stack([load_image(p, contract.input_size) for p in paths])
    encoded = [p.read_bytes() for p in paths]
    measured: dict[str, list[dict]] = {}
    with TritonServer(repo) as server, contextlib.ExitStack() as stack:
        senders: dict[str, Callable[[int], Sender]] = {
            "triton": lambda batch: triton_sender(server.url, pool[:batch], name),
        }
        if "transformer" in args.paths:
            url = stack.enter_context(
                TransformerProcess(name, server.url, repo, workdir / "log.db", free_port())
            )
            senders["transformer"] = lambda batch: transformer_sender(url, encoded[:batch])
        for path in args.paths:
            with senders[path](1)() as send:
                send()  # warm: first request loads and warms the model
            for batch in batches:
                sender = senders[path](batch)
                run = {"path": path} | drive(sender, batch, args.seconds, args.clients)
                run["load_average_1m"] = round(os.getloadavg()[0], 2)
                print(json.dumps(run), flush=True)
                measured.setdefault(path, []).append(run)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()  # fmt: skip
    results_path = results_file(args.dataset)
    previous = json.loads(results_path.read_text()) if results_path.is_file() else {}
    results = previous.get("paths", {})
    for path, runs in measured.items():
        results[path] = {
            "description": PATHS[path],
            "measured": datetime.now(UTC).date().isoformat(),
            "commit": commit,
            "runs": runs,
        }
    results_path.parent.mkdir(parents=True, exist_ok=True)
    results_path.write_text(
        json.dumps(
            {
                "model": f"{describe(export_dir)}, {name}",
                "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared), no GPU",
                "paths": results,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"results in {results_path}")


if __name__ == "__main__":
    main()
