"""Several transformer processes write one log at once while a reviewer marks and a drift
check reads: every row arrives exactly once, on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import multiprocessing
from collections import Counter

from anomalyops.serving.predictions.log import PredictionLog, PredictionRecord

WRITERS = 4
ROWS = 1000  # per writer
BATCH = 4  # images per request, as a transformer logs one request's images together


def write_rows(url: str, files: str, worker: int, start) -> list[int]:
    """One transformer replica: ROWS predictions in requests of BATCH, each row tagged."""
    start.wait()
    ids = []
    with PredictionLog(url, files=files) as log:
        for first in range(0, ROWS, BATCH):
            records = [
                PredictionRecord("weld", float(i), 10.0, "anomalous" if i % 10 == 0 else "good",
                                 100.0, 20.0, 50.0, source_size=f"{worker}:{i}",
                                 image=b"png" if i % 50 == 0 else None)
                for i in range(first, first + BATCH)
            ]  # fmt: skip
            ids += log.write(records)
    return ids


def test_concurrent_writers_lose_and_duplicate_nothing(log_url, tmp_path):
    files = str(tmp_path / "files")
    with PredictionLog(log_url, files=files) as log:  # created once, as the chart's job does
        context = multiprocessing.get_context("spawn")
        start = context.Manager().Event()
        with context.Pool(WRITERS) as pool:
            pending = [
                pool.apply_async(write_rows, (log_url, files, worker, start))
                for worker in range(WRITERS)
            ]
            start.set()
            marked, windows = 0, 0
            while not all(p.ready() for p in pending):  # the review page and drift job
                window = log.window("weld", 500)
                assert [r["id"] for r in window] == sorted(r["id"] for r in window)
                windows += 1
                flagged = log.recent("weld", limit=1, label="anomalous", verdict="unreviewed")
                if flagged:
                    log.mark(flagged[0]["id"], "false_alarm", "ana")
                    marked += 1
            ids = [i for p in pending for i in p.get(timeout=300)]
        assert len(ids) == len(set(ids)) == WRITERS * ROWS
        tags = Counter(r["source_size"] for r in log.recent(limit=10 * WRITERS * ROWS))
        assert len(tags) == WRITERS * ROWS and set(tags.values()) == {1}
        assert set(tags) == {f"{w}:{i}" for w in range(WRITERS) for i in range(ROWS)}
        assert log.count("weld") == WRITERS * ROWS
        assert len(log.window("weld", 10 * WRITERS * ROWS)) == WRITERS * ROWS
        assert windows > 0 and len(log.reviewed("weld", "false_alarm")) == marked
        kept = [r for r in log.recent(limit=10 * WRITERS * ROWS) if r["image_file"]]
        assert len(kept) == WRITERS * ROWS // 50
        assert all(log.read_file(r["image_file"]) == b"png" for r in kept)
