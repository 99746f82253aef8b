"""Fit time against the number of training images, on real images: is it linear?

    python tests/benchmarks/fit_scaling.py [--images 50,100,200,400]

The set: 500×1250 grayscale parts cut from macaroni1's train/good (the middle 1500×600
band of each 1500×1000 JPEG, resized), and its mirror images for more than 100 (100 each
of original, left-right, up-down and both). At the defaults they are tiled (344×864
working size, 10 tiles of 256², 10 240 patches an image). For each image count the real
train step (`anomalyops fit`: decode, features, coreset, HNSW index, cross-fitted
thresholds, save) runs once in a fresh process, with its stages timed. Writes
results/fit-scaling.json (the seconds of every stage and the whole, the seconds per image
and their ratio to the smallest count's: 1.0 = linear; peak memory) and its table,
results/fit-scaling.md, into the README's `fit-scaling` block (`--tables-only` rewrites
the table from the JSON). Timings on these shared 2-core machines vary; the load average
is recorded.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
from PIL import Image, ImageOps

from anomalyops.components.data.datasets import FolderDataset
from anomalyops.components.detectors.patchcore import detector as patchcore
from anomalyops.components.training.train import train

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "fit-scaling.json"
sys.path.insert(0, str(HERE))
from detectors import README, readme_with_tables  # noqa: E402  (one README block writer)

SOURCE = HERE.parents[2] / "shared" / "data" / "visa" / "macaroni1" / "train" / "good"
STAGES = ("decode_s", "features_s", "coreset_s", "index_s", "cross_fit_search_s")
PART = (1250, 500)  # width × height of a part
FLIPS = {
    "original": lambda image: image,
    "mirrored": ImageOps.mirror,
    "flipped": ImageOps.flip,
    "turned": lambda image: ImageOps.flip(ImageOps.mirror(image)),
}


def make_parts(folder: Path, count: int) -> None:
    """COUNT grayscale parts (PART-sized) from macaroni1's train/good and their flips."""
    sources = sorted(SOURCE.glob("*.jpg"))
    if count > len(sources) * len(FLIPS):
        raise SystemExit(f"at most {len(sources) * len(FLIPS)} parts from {SOURCE}")
    good = folder / "train" / "good"
    good.mkdir(parents=True)
    for number in range(count):
        name, flip = list(FLIPS.items())[number // len(sources)]
        path = sources[number % len(sources)]
        with Image.open(path) as image:
            width, height = image.size
            band = round(width * PART[1] / PART[0])
            top = (height - band) // 2
            part = image.convert("L").crop((0, top, width, top + band))
            flip(part.resize(PART, Image.Resampling.LANCZOS)).save(good / f"{name}_{path.stem}.png")


def timed(owner: object, name: str, seconds: dict[str, float]) -> None:
    """Wrap OWNER.NAME so the seconds spent in it add up under NAME."""
    original = getattr(owner, name)

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            seconds[name] += time.perf_counter() - started

    setattr(owner, name, wrapper)


def run_one(count: int, work: Path) -> dict:
    data, output = work / f"parts{count}", work / f"model{count}"
    make_parts(data, count)
    seconds: dict[str, float] = defaultdict(float)
    timed(FolderDataset, "load_train", seconds)
    timed(patchcore.PatchCore, "_patches", seconds)
    timed(patchcore.PatchCore, "_select", seconds)
    timed(patchcore, "build_index", seconds)
    started = time.perf_counter()
    result = train(data, output)
    total = time.perf_counter() - started
    detector = result.detector
    fit = result.summary["fit_seconds"]
    stages = {
        "decode_s": seconds["load_train"],
        "features_s": seconds["_patches"],
        "coreset_s": seconds["_select"],
        "index_s": seconds["build_index"],
        # cross-fit's own work: every fold's images searched without their bank rows
        "cross_fit_search_s": fit
        - seconds["_patches"]
        - seconds["_select"]
        - seconds["build_index"],
    }
    return {
        "images": count,
        "working_size": list(detector.config.input_size),
        "tiles": detector.model.grid.count,
        "patches": count * detector.model.patches_per_image(),
        "bank": len(detector.model.memory_bank),
        **{key: round(value, 1) for key, value in stages.items()},
        "train_s": round(total, 1),
        "s_per_image": round(total / count, 3),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def table(result: dict) -> str:
    """The markdown table of a fit-scaling.json."""
    lines = [
        "| images | patches | bank | decode s | features s | coreset s | HNSW index s "
        "| cross-fit search s | **train s** | s/image | vs smallest | peak RSS MiB | load |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        cells = [row["images"], row["patches"], row["bank"], *(row[key] for key in STAGES),
                 f"**{row['train_s']}**", row["s_per_image"], row["per_image_vs_smallest"],
                 row["peak_rss_mib"], row["load_average_1m"]]  # fmt: skip
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    size, when = "×".join(map(str, result["part"])), f"{result['commit']}, {result['date']}"
    lines.append(f"\n{size} grayscale parts ({result['source']}), tiled at the defaults; "
                 f"commit {when}, {result['threads']} threads.")  # fmt: skip
    return "\n".join(lines) + "\n"


def write_tables() -> None:
    (RESULTS.with_suffix(".md")).write_text(table(json.loads(RESULTS.read_text())))
    README.write_text(readme_with_tables(README.read_text(), RESULTS.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", default="50,100,200,400")
    parser.add_argument("--tables-only", action="store_true")
    args = parser.parse_args()
    if args.tables_only:
        return write_tables()
    rows = []
    with tempfile.TemporaryDirectory(prefix="fit-scaling-") as work:
        for count in map(int, args.images.split(",")):
            # Each count in a fresh process: the stage timers and the memory start clean.
            out = Path(work) / f"row{count}.json"
            subprocess.run([sys.executable, __file__, "--one", str(count), "--work", work,
                            "--row", str(out)], check=True)  # fmt: skip
            rows.append(json.loads(out.read_text()))
            row = rows[-1]
            stages = ", ".join(f"{key[:-2]} {row[key]}" for key in STAGES)
            print(f"{count:4d} images  {row['patches']:8d} patches  bank {row['bank']:7d}  "
                  f"train {row['train_s']:6.1f} s = {row['s_per_image']:.3f} s/image "
                  f"({stages})", flush=True)  # fmt: skip
    base = rows[0]["s_per_image"]
    for row in rows:
        row["per_image_vs_smallest"] = round(row["s_per_image"] / base, 2)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()  # fmt: skip
    RESULTS.write_text(json.dumps({
        "date": time.strftime("%Y-%m-%d"), "commit": commit, "part": list(PART),
        "source": "visa/macaroni1 train/good, grayscale 1250×500 bands and their flips",
        "threads": torch.get_num_threads(), "rows": rows,
    }, indent=1) + "\n")  # fmt: skip
    write_tables()
    print(f"wrote {RESULTS} and its table in README.md")


def one() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--one", type=int, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--row", type=Path, required=True)
    args = parser.parse_args()
    row = run_one(args.one, args.work)
    row["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    args.row.write_text(json.dumps(row))


if __name__ == "__main__":
    one() if "--one" in sys.argv else main()
