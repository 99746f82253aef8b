"""Prediction log capacity: rows/s from several writer processes, and a drift window's query.

    .venv/bin/python tests/benchmarks/log_capacity.py [--prefill 1000000] [--rows 20000]

For each backend (SQLite in WAL mode on a local file; PostgreSQL 15 from Debian, started
here by tests/postgres.py with fsync on, as a server runs): the log is first filled with
--prefill rows of an older model version (bulk, 5 000 a transaction: months of history),
then --processes writer processes log --rows rows in all, in requests of --batch images as
a transformer does (one transaction per request), started together; rows/s is rows over
the wall time from start to the last commit, so it is the rate on a log that size. Then
`window(10 000)` of one model version (the drift check's query) is timed, median of 5,
when that version's rows are the newest and when a new version has 500 rows under all
the others. Counts are checked: every row arrives once.
Results: tests/benchmarks/results/log_capacity.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/postgres.py

from postgres import new_database, postgres_server  # noqa: E402

from anomalyops.serving.ports import free_port  # noqa: E402
from anomalyops.serving.predictions.log import PredictionLog, PredictionRecord  # noqa: E402


def _writer(url: str, rows: int, batch: int, version: str, start) -> None:
    start.wait()
    with PredictionLog(url) as log:
        for first in range(0, rows, batch):
            log.write([PredictionRecord("weld", float(i), 10.0, "good", 100.0, 20.0, 50.0,
                                        source_size="256x256", model_version=version)
                       for i in range(first, min(first + batch, rows))])  # fmt: skip


def write_rows(url: str, rows: int, processes: int, batch: int, version: str = "1") -> float:
    """Rows/s of PROCESSES writers logging ROWS in all."""
    context = multiprocessing.get_context("spawn")
    start = context.Manager().Event()
    share = [rows // processes + (i < rows % processes) for i in range(processes)]
    workers = [context.Process(target=_writer, args=(url, n, batch, version, start))
               for n in share]  # fmt: skip
    for worker in workers:
        worker.start()
    time.sleep(2)  # let every writer import and connect before the clock starts
    began = time.perf_counter()
    start.set()
    for worker in workers:
        worker.join()
        if worker.exitcode:
            raise RuntimeError(f"a writer failed (exit code {worker.exitcode})")
    return rows / (time.perf_counter() - began)


def window_seconds(log: PredictionLog, version: str) -> float:
    times = []
    for _ in range(5):
        began = time.perf_counter()
        log.window("weld", 10_000, model_version=version)
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def prefill(url: str, rows: int, chunk: int = 5000) -> float:
    """Seconds to bulk-load ROWS of model version 0 (the history the timed writers join)."""
    began = time.perf_counter()
    with PredictionLog(url) as log:
        for first in range(0, rows, chunk):
            log.write([PredictionRecord("weld", float(i % 97), 10.0, "good", 100.0, 20.0, 50.0,
                                        source_size="256x256", model_version="0")
                       for i in range(first, min(first + chunk, rows))])  # fmt: skip
    return time.perf_counter() - began


def measure(url: str, rows: int, processes: int, batch: int, history: int) -> dict:
    with PredictionLog(url):  # schema created once, before the writers race
        pass
    loaded = prefill(url, history)
    rate = write_rows(url, rows, processes, batch)
    with PredictionLog(url) as log:
        newest = window_seconds(log, "1")
        write_rows(url, 500, 1, batch, version="2")
        buried = window_seconds(log, "2")
        count = log.count()
    if count != history + rows + 500:
        raise RuntimeError(f"{url}: {count} rows, expected {history + rows + 500}")
    return {"rows_per_s": round(rate, 1), "window_10000_newest_s": round(newest, 4),
            "window_new_version_500_s": round(buried, 4), "rows": count,
            "prefill_s": round(loaded, 1)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefill", type=int, default=1_000_000)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "log_capacity.json")
    args = parser.parse_args()
    results = {"prefill": args.prefill, "rows": args.rows, "processes": args.processes,
               "batch": args.batch, "date": time.strftime("%Y-%m-%d"),
               "load_1min": round(os.getloadavg()[0], 2), "backends": {}}  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        results["backends"]["sqlite"] = measure(
            str(Path(folder) / "log.db"), args.rows, args.processes, args.batch, args.prefill
        )
    with postgres_server(free_port(), fsync=True) as admin:
        results["backends"]["postgresql"] = measure(
            new_database(admin), args.rows, args.processes, args.batch, args.prefill
        )
    print(json.dumps(results, indent=2))
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
