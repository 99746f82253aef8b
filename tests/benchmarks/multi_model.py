"""Many models per node: N variants loaded into one Triton (CPU python flavour).

    .venv/bin/python tests/benchmarks/multi_model.py [--counts 5 20] [--export DIR]
        [--seconds 15] [--clients 4]

A plant node serves several lines, each its own variant. This loads N copies of one
exported model (weld PatchCore at the shipped 10 % bank, trained here unless --export
names one) under N variant names into one real Triton, and measures:
- load time: Triton's start until every model is ready (warm-up included);
- memory: resident memory (RSS) of Triton and its python-backend stubs (one process per
  model instance) once every model has answered; per model = that total over N, and the
  marginal cost per extra model = the slope between the smallest and largest N;
- throughput: CLIENTS threads send batch-1 uint8 requests for SECONDS, each request to
  the next model in turn, so all N models are hot at once.
The GPU (onnxruntime flavour) rows need a GPU machine: not measured here. Results, with
the commit and the load average: tests/benchmarks/results/multi-model.json.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from anomalyops.serving.images.decode import load_image  # noqa: E402
from anomalyops.serving.triton.client import TritonClient  # noqa: E402
from anomalyops.serving.triton.repository import build_repository  # noqa: E402
from anomalyops.serving.triton.server import TritonServer  # noqa: E402
from serving import DATASETS, drive, exported_model  # noqa: E402

RESULTS = HERE / "results" / "multi-model.json"


def tree_rss_mib(pid: int) -> float:
    """Resident memory of PID and every process under it (Triton's backend stubs)."""
    root = psutil.Process(pid)
    total = 0
    for process in [root, *root.children(recursive=True)]:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total / (1 << 20)


def round_robin_sender(url: str, names: list[str], image: np.ndarray):
    """A `serving.drive` sender: each request goes to the next model of NAMES."""
    turn = itertools.cycle(names)
    lock = threading.Lock()

    @contextlib.contextmanager
    def open_clients():
        with contextlib.ExitStack() as stack:
            clients = {name: stack.enter_context(TritonClient(url, name, retries=0))
                       for name in names}  # fmt: skip

            def send() -> None:
                with lock:
                    name = next(turn)
                clients[name].infer(image)

            yield send

    return open_clients


def measure(export_dir: Path, count: int, workdir: Path, seconds: float, clients: int,
            image: np.ndarray) -> dict:  # fmt: skip
    names = [f"line-{i:02d}" for i in range(count)]
    repository = build_repository(workdir / f"repository-{count}", dict.fromkeys(names, export_dir),
                                  "python")  # fmt: skip
    began = time.perf_counter()
    with TritonServer(repository, startup_timeout=900) as server:
        load_s = time.perf_counter() - began
        for name in names:  # every model answers once before memory is read
            with TritonClient(server.url, name, retries=0) as client:
                client.infer(image)
        rss = tree_rss_mib(server.process.pid)
        run = drive(round_robin_sender(server.url, names, image), 1, seconds, clients)
    return {"models": count, "load_s": round(load_s, 1), "rss_mib": round(rss, 1),
            "rss_per_model_mib": round(rss / count, 1), **run,
            "load_average_1m": round(os.getloadavg()[0], 2)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[5, 20])
    parser.add_argument("--export", type=Path, help="exported model dir (default: train one)")
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-multi-model-"))
    export_dir = args.export or exported_model(DATASETS["weld"], workdir, 0.1)
    from anomalyops.serving.contract.model import load_contract

    first = sorted((DATASETS["weld"] / "test" / "good").glob("*"))[0]
    image = load_image(first, load_contract(export_dir).input_size)[None]
    runs = []
    for count in sorted(args.counts):
        run = measure(export_dir, count, workdir, args.seconds, args.clients, image)
        print(json.dumps(run), flush=True)
        runs.append(run)
    small, large = runs[0], runs[-1]
    marginal = ((large["rss_mib"] - small["rss_mib"]) / (large["models"] - small["models"])
                if large["models"] > small["models"] else None)  # fmt: skip
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=HERE).stdout.strip()  # fmt: skip
    result = {
        "model": "patchcore efficientnet_lite0 256x256, weld, coreset 10%, python flavour (CPU)",
        "measured": datetime.now(UTC).date().isoformat(),
        "commit": commit,
        "machine": f"{os.uname().machine}, {os.cpu_count()} CPUs (shared), no GPU",
        "runs": runs,
        "marginal_rss_per_model_mib": round(marginal, 1) if marginal is not None else None,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"results in {args.out}")


if __name__ == "__main__":
    main()
