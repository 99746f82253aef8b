"""Fit time against the number of training images: is it linear?

    python tests/benchmarks/fit_scaling.py [--images 50,100,200,400] [--patches 8192]

Times PatchCore's coreset (the stage that grew with the square of the patches: the
second greedy pass over every chunk's candidates) on features shaped like a tiled
macaroni1 part (8 tiles of 32×32 stride-8 patches = 8192 patches of 152 dimensions an
image; random features, since the cost does not depend on their values), at the default
10 % ratio, for each image count. Writes results/fit-scaling.json with seconds per
image count and the ratio of each step's time per image to the smallest count's
(1.0 = linear). Timings on these shared 2-core machines vary ±50 %; the load average is
recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path

import torch

from anomalyops.components.detectors.patchcore import sampler
from anomalyops.components.detectors.patchcore.sampler import greedy_coreset

RESULTS = Path(__file__).resolve().with_name("results") / "fit-scaling.json"
DIMENSIONS = 152  # EfficientNet-Lite0, strides 8 + 16


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", default="50,100,200,400")
    parser.add_argument("--patches", type=int, default=8192, help="patches per image")
    parser.add_argument("--ratio", type=float, default=0.1)
    args = parser.parse_args()
    rows = []
    for count in map(int, args.images.split(",")):
        features = torch.randn(
            count * args.patches, DIMENSIONS, generator=torch.Generator().manual_seed(count)
        )
        started = time.perf_counter()
        bank = greedy_coreset(features, args.ratio, progress=True)
        seconds = time.perf_counter() - started
        rows.append({"images": count, "patches": len(features), "bank": len(bank),
                     "coreset_s": round(seconds, 1), "s_per_image": round(seconds / count, 3),
                     "load_average_1m": os.getloadavg()[0]})  # fmt: skip
        print(
            f"{count:5d} images  {len(features):8d} patches  bank {len(bank):7d}  "
            f"{seconds:7.1f} s  {seconds / count:.3f} s/image",
            flush=True,
        )
    base = rows[0]["s_per_image"]
    for row in rows:
        row["per_image_vs_smallest"] = round(row["s_per_image"] / base, 2)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()  # fmt: skip
    RESULTS.write_text(json.dumps({
        "date": time.strftime("%Y-%m-%d"), "commit": commit, "ratio": args.ratio,
        "patches_per_image": args.patches, "dimensions": DIMENSIONS,
        "chunk_size": sampler.CHUNK_SIZE, "second_stage_max": sampler.SECOND_STAGE_MAX,
        "threads": torch.get_num_threads(), "rows": rows,
    }, indent=1) + "\n")  # fmt: skip
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
