"""Drift check benchmark: speed on large logs, and alert rates on real weld images.

    .venv/bin/python tests/benchmarks/drift.py [--parts speed calibration weld] [--rows 1000000]

- `speed`: a log of 10 000 predictions, timed through `check_drift` (window read,
  Evidently, HTML report, verdict), in a warm process and as the `anomalyops drift check`
  command (which pays Evidently's import); then a log of --rows rows where `window()` of
  the champion is timed when the champion's rows are the newest and when a new champion
  has only a few rows under a million older ones.
- `calibration` (validation data only: weld train/good): 5 random splits, each trains a
  PatchCore on 60 % of train/good and treats the other 40 % as unchanged production and,
  5 % / 10 % darker or rotated 5° / 10°, as shifted production. Windows of 500 rows are
  drawn with replacement. Prints each column's root-n-scaled distance
  (distance × sqrt(reference size)), whose largest value over unchanged windows sets the
  default sensitivity (components/drift/check.py) with a margin.
- `weld` (the test split, measured, not tuned): a PatchCore trained on all train/good;
  unchanged production = weld test/good, shifted = the same images darker or rotated.
  False-alert rate over 200 windows per size (each judged alone), the same windows run
  through the alert state (hysteresis + cooldown) counting alerts, and detection rates.

Window ratios here are computed with scipy's Wasserstein distance over the reference
std, Evidently's own formula (evidently.legacy...wasserstein_distance_norm), so that
thousands of windows take seconds; the first windows are checked against the real
Evidently run (`measure`) to 1e-9. Results: tests/benchmarks/results/drift.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import stats

from anomalyops.components.drift.check import (
    COLUMNS,
    DriftSettings,
    check_drift,
    column_ratio,
    measure,
    scaled,
    thresholds,
)
from anomalyops.components.drift.state import AlertState, step
from anomalyops.serving.contract.reference import Reference, load_reference
from anomalyops.serving.images.statistics import STATISTICS, image_statistics
from anomalyops.serving.predictions.log import PredictionLog, PredictionRecord

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("ANOMALYOPS_DATA", ROOT.parent / "shared" / "data"))
WELD = DATA / "battery_weld" / "weld"
RESULTS = Path(__file__).with_name("results") / "drift.json"
SIZE = (256, 256)
SHIFTS = ("darker 5%", "darker 10%", "rotated 5°", "rotated 10°")


def shifted(images: np.ndarray, shift: str) -> np.ndarray:
    """The same parts under changed exposure or a rotated fixture."""
    if shift.startswith("darker"):
        factor = 1 - float(shift.split()[1].rstrip("%")) / 100
        return np.clip(np.rint(images.astype(np.float32) * factor), 0, 255).astype(np.uint8)
    degrees = float(shift.split()[1].rstrip("°"))
    return np.stack(
        [np.asarray(Image.fromarray(i).rotate(degrees, Image.Resampling.BILINEAR)) for i in images]
    )


def observe(detector, images: np.ndarray) -> dict[str, np.ndarray]:
    """What a drift check compares for IMAGES: score and image statistics (as scaled)."""
    table = {name: scaled(name, [image_statistics(i)[name] for i in images]) for name in STATISTICS}
    table["score"] = np.asarray(detector.predict(images).scores, dtype=float)
    return table


def reference_arrays(reference: Reference) -> dict[str, np.ndarray]:
    arrays = {name: scaled(name, v) for name, v in reference.statistics.items()}
    arrays["score"] = scaled("score", reference.scores)
    return arrays


def distances(ref: dict[str, np.ndarray], window: dict[str, np.ndarray]) -> dict[str, float]:
    """Evidently's normalised Wasserstein distance per column (same formula, fast)."""
    return {
        name: stats.wasserstein_distance(ref[name], window[name]) / max(np.std(ref[name]), 1e-3)
        for name in COLUMNS
    }


def draw(table: dict[str, np.ndarray], size: int, rng: np.random.Generator) -> dict:
    index = rng.integers(0, len(table["score"]), size)
    return {name: values[index] for name, values in table.items()}


def rows(table: dict[str, np.ndarray]) -> list[dict]:
    """Log rows (raw values) back from a scaled table."""
    raw = {**table, "sharpness": np.expm1(table["sharpness"])}
    return [{name: float(raw[name][i]) for name in COLUMNS} for i in range(len(table["score"]))]


def train_on(paths: list[Path], folder: Path):
    """A PatchCore (1 % coreset) trained on PATHS, laid out as a train/good folder."""
    from anomalyops.components.training.train import train

    good = folder / "data" / "train" / "good"
    good.mkdir(parents=True)
    for path in paths:
        (good / path.name).symlink_to(path)
    result = train(
        folder / "data", folder / "model", "patchcore", {"coreset_ratio": 0.01}, progress=False
    )
    return result.detector, load_reference(folder / "model")


def load(paths: list[Path]) -> np.ndarray:
    from anomalyops.serving.images.decode import load_image

    return np.stack([load_image(p, SIZE) for p in paths])


# ---------------------------------------------------------------- speed


def fill(
    log: PredictionLog, count: int, version: str, rng: np.random.Generator, batch: int = 10_000
) -> None:
    for start in range(0, count, batch):
        n = min(batch, count - start)
        scores = rng.normal(44, 2, n)
        light, spread, focus = (
            rng.normal(155, 30, n),
            rng.normal(105, 15, n),
            rng.normal(400, 100, n),
        )
        log.write(
            [
                PredictionRecord(
                    "weld",
                    float(s),
                    47.0,
                    "good",
                    float(b),
                    float(c),
                    float(f),
                    model_version=version,
                )
                for s, b, c, f in zip(scores, light, spread, focus, strict=True)
            ]
        )


def bench_speed(large_rows: int, workdir: Path) -> dict:
    rng = np.random.default_rng(0)
    reference = Reference(
        scores=list(rng.normal(44, 2, 8)),
        statistics={
            "brightness": list(rng.normal(155, 30, 37)),
            "contrast": list(rng.normal(105, 15, 37)),
            "sharpness": list(rng.normal(400, 100, 37)),
        },
    )
    reference.save(workdir)
    log_path = workdir / "small.db"
    with PredictionLog(log_path) as log:
        fill(log, 10_000, "3", rng)
        settings = DriftSettings(window=10_000)
        check_drift(log, "weld", reference, workdir / "warmup", "3", settings)  # imports
        seconds = []
        for _ in range(3):
            started = time.perf_counter()
            verdict = check_drift(log, "weld", reference, workdir / "drift", "3", settings)
            seconds.append(time.perf_counter() - started)
    started = time.perf_counter()
    command = subprocess.run(
        [
            sys.executable,
            "-m",
            "anomalyops.pipelines.cli",
            "drift",
            "check",
            "--variant",
            "weld",
            "--log-db",
            str(log_path),
            "--reference",
            str(workdir),
            "--model-version",
            "3",
            "--window",
            "10000",
            "--out",
            str(workdir / "cli"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    cli_seconds = time.perf_counter() - started
    if command.returncode not in (0, 1):
        raise RuntimeError(f"drift check command failed: {command.stderr}")
    result = {
        "window_rows": verdict.samples,
        "check_seconds_median": round(float(np.median(seconds)), 3),
        "check_seconds": [round(s, 3) for s in seconds],
        "cli_seconds": round(cli_seconds, 2),
        "report_mb": round(Path(verdict.report_path).stat().st_size / 1e6, 2),
    }
    print(
        f"check over {verdict.samples} rows: median {result['check_seconds_median']} s "
        f"(warm process); `anomalyops drift check`: {result['cli_seconds']} s incl. imports"
    )
    large = workdir / "large.db"
    with PredictionLog(large) as log:
        started = time.perf_counter()
        fill(log, large_rows, "3", rng, batch=50_000)
        fill(log, 500, "4", rng)
        fill_seconds = time.perf_counter() - started
        timings = {}
        for label, version in (("newest rows", "4"), ("all versions", None), ("old version", "3")):
            taken = []
            for _ in range(3):
                started = time.perf_counter()
                got = log.window("weld", 10_000, version)
                taken.append(time.perf_counter() - started)
            timings[label] = {"rows": len(got), "seconds": round(float(np.median(taken)), 3)}
            print(
                f"window(10 000) over {large_rows + 500} rows, {label}: {len(got)} rows in "
                f"{timings[label]['seconds']} s"
            )
        plan = (
            sqlite3.connect(large)
            .execute(
                "EXPLAIN QUERY PLAN SELECT * FROM predictions WHERE variant = ? AND label != "
                "'unusable' AND model_version = ? ORDER BY id DESC LIMIT ?",
                ("weld", "4", 10_000),
            )
            .fetchall()
        )
    result["large_log"] = {
        "rows": large_rows + 500,
        "fill_seconds": round(fill_seconds, 1),
        "window": timings,
        "plan": [row[-1] for row in plan],
    }
    return result


# ---------------------------------------------------------------- calibration


def bench_calibration(workdir: Path, splits: int, windows: int, size: int) -> dict:
    paths = sorted((WELD / "train" / "good").glob("*.png"))
    null, shifted_z = [], {shift: [] for shift in SHIFTS}
    per_column = {name: [] for name in COLUMNS}
    for split in range(splits):
        rng = np.random.default_rng(split)
        order = rng.permutation(len(paths))
        cut = round(0.6 * len(paths))
        detector, reference = train_on([paths[i] for i in order[:cut]], workdir / f"s{split}")
        production = load([paths[i] for i in order[cut:]])
        ref = reference_arrays(reference)
        scale = {name: np.sqrt(len(ref[name])) for name in COLUMNS}
        tables = {"unchanged": observe(detector, production)}
        tables.update({shift: observe(detector, shifted(production, shift)) for shift in SHIFTS})
        for name, table in tables.items():
            for _ in range(windows):
                d = distances(ref, draw(table, size, rng))
                z = {c: d[c] * scale[c] for c in COLUMNS}
                if name == "unchanged":
                    null.append(max(z.values()))
                    for c in COLUMNS:
                        per_column[c].append(z[c])
                else:
                    shifted_z[name].append(max(z.values()))
        print(
            f"split {split}: unchanged max z {max(null[-windows:]):.2f}; "
            + ", ".join(f"{s} median {np.median(v[-windows:]):.2f}" for s, v in shifted_z.items())
        )
    largest = float(np.max(null))
    result = {
        "splits": splits,
        "windows_per_split": windows,
        "window_size": size,
        "unchanged_max_z": round(largest, 3),
        "unchanged_z_quantiles": {
            q: round(float(np.quantile(null, q)), 3) for q in (0.5, 0.95, 0.99)
        },
        "unchanged_column_max_z": {c: round(float(np.max(v)), 3) for c, v in per_column.items()},
        "shifted_median_z": {s: round(float(np.median(v)), 3) for s, v in shifted_z.items()},
        "shifted_caught_at_default": {
            s: round(float(np.mean(np.array(v) >= DriftSettings().sensitivity)), 3)
            for s, v in shifted_z.items()
        },
        "default_sensitivity": DriftSettings().sensitivity,
    }
    print(
        f"unchanged windows: largest root-n-scaled distance {largest:.2f} "
        f"(default sensitivity {DriftSettings().sensitivity})"
    )
    return result


# ---------------------------------------------------------------- weld (test split)


def alert_sequence(ratios: list[float], settings: DriftSettings) -> int:
    """Alerts raised when RATIOS come one check an hour through hysteresis and cooldown."""
    state, alerts = AlertState(), 0
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for hour, ratio in enumerate(ratios):
        transition = step(
            state,
            ratio,
            "1",
            start + timedelta(hours=hour),
            settings.raise_at,
            settings.clear_below,
            timedelta(seconds=settings.cooldown_s),
        )
        state, alerts = transition.state, alerts + transition.raised
    return alerts


def bench_weld(workdir: Path, windows: int, sizes: tuple[int, ...]) -> dict:
    from anomalyops.components.data.datasets import FolderDataset

    detector, reference = train_on(
        sorted((WELD / "train" / "good").glob("*.png")), workdir / "weld"
    )
    test = FolderDataset(WELD).load_test(SIZE, progress=False)
    good = test.images[test.labels == 0]
    settings = DriftSettings()
    limits = thresholds(reference, settings.sensitivity)
    ref = reference_arrays(reference)
    tables = {"unchanged": observe(detector, good)}
    tables.update({shift: observe(detector, shifted(good, shift)) for shift in SHIFTS})
    rng = np.random.default_rng(7)
    # The fast formula must be Evidently's: compare on real windows.
    for name in ("unchanged", SHIFTS[1]):
        window = draw(tables[name], 300, rng)
        columns, _, _ = measure(reference, rows(window), limits)
        fast = distances(ref, window)
        for column in COLUMNS:
            if abs(columns[column]["distance"] - fast[column]) > 1e-9:
                raise AssertionError(
                    f"{column}: Evidently {columns[column]['distance']} vs formula {fast[column]}"
                )
    result = {
        "good_images": len(good),
        "reference_scores": len(reference.scores),
        "reference_images": len(ref["brightness"]),
        "sizes": {},
    }
    for size in sizes:
        entry = {}
        for name, table in tables.items():
            ratios = []
            for _ in range(windows):
                window = draw(table, size, rng)
                d = distances(ref, window)
                ratios.append(max(column_ratio(c, d[c], limits[c], window[c].mean(),
                                               ref[c].mean()) for c in COLUMNS))  # fmt: skip
            rate = float(np.mean(np.array(ratios) >= settings.raise_at))
            entry[name] = {
                "alert_rate": round(rate, 3),
                "median_ratio": round(float(np.median(ratios)), 3),
                "max_ratio": round(float(np.max(ratios)), 3),
                "alerts_in_sequence": alert_sequence(ratios, settings),
            }
        result["sizes"][size] = entry
        print(
            f"window {size}: "
            + "; ".join(
                f"{n} {e['alert_rate']:.0%} (median ratio {e['median_ratio']:.2f}, "
                f"{e['alerts_in_sequence']} alerts in {windows} hourly checks)"
                for n, e in entry.items()
            )
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--parts",
        nargs="+",
        default=["speed", "calibration", "weld"],
        choices=["speed", "calibration", "weld"],
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the large log")
    parser.add_argument("--windows", type=int, default=200, help="windows per case")
    args = parser.parse_args()
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    results["machine"] = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
    }
    with tempfile.TemporaryDirectory(prefix="anomalyops-drift-bench-") as scratch:
        workdir = Path(scratch)
        if "speed" in args.parts:
            results["speed"] = bench_speed(args.rows, workdir)
        if "calibration" in args.parts:
            results["calibration"] = bench_calibration(workdir, 5, args.windows // 4, 500)
        if "weld" in args.parts:
            results["weld"] = bench_weld(workdir, args.windows, (100, 300, 500, 2000))
    results["measured"] = datetime.now(UTC).isoformat(timespec="seconds")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, ensure_ascii=False))
    print(f"results: {RESULTS}")


if __name__ == "__main__":
    main()
