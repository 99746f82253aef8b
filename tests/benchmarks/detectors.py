"""Accuracy, speed and memory of every detector's default settings on every real dataset.

    python tests/benchmarks/detectors.py [--datasets weld,macaroni1] [--variants default]
        [--detectors patchcore,efficientad]

Per dataset, as `anomalyops fit` does: settings decided from train/good alone
(components/detectors/auto.py), fit on all of train/good, image threshold calibrated on
its out-of-fold scores (5 contiguous folds in file-name order,
components/training/folds.py) for a 1 % per-image false-positive rate. Then:

- validation (what settings are chosen on): train/good's out-of-fold scores and copies
  of every image with CutPaste defects pasted on (components/synthetic.paste_defects),
  each scored by its fold's bank (the other folds' rows): image and pixel AUROC, and
  image AUROC on copies with small defects (SMALL_DEFECTS: what resolution is chosen on);
- test (reported, never used to choose): image/pixel AUROC, AUPRO, how many test/good
  images the shipped threshold flags and the share of defective ones it flags, and image
  AUROC with every test image 10 % darker, 10 % brighter, and shifted by 2 % of its size;
- fit seconds and the cross-fitting's extra seconds, predict ms/img and ms per
  megapixel (in process), and through the exported ONNX graph in onnxruntime (batch 1,
  with its largest score gap to the in-process path); the detection rate per defect type
  at the shipped threshold (transistor's `misplaced` is a logical anomaly);
- PatchCore only: bank size, HNSW recall@1 against exact search on the test images'
  patches, the exported graph's scratch bytes per image and the Triton max batch.

Variants: `default` (what the code decides), `coreset1` (a 1 % bank, the old default),
`size512` (512² parts at native resolution alone), `one_scale` (512² parts at 256² alone;
the default scores them at both, fused: auto.py), `whole_image` (tiled sets given a
whole-image coarse scale too, auto.whole_image_size),
`standardise` / `raw` (forced on / off:
the alternatives the standardisation default was chosen against, on validation data),
`as_taken` (PatchCore without the gain reference auto.py gives unclipped, evenly lit sets:
the grey levels as taken), `gained` (PatchCore with the gain reference forced on, at the
set's mean grey level).
Writes results/detectors-<dataset>.json (a run replaces the rows of the detectors and
variants it ran and keeps the others; each row records its commit, date and load),
results/detectors.md and results/detector-families.md (every family's default row, its
means over the datasets and the published anchors; `--tables-only` rewrites both tables
from the results files); timings on these shared 2-core machines vary ±50 %: compare rows
of one sitting (the load average is recorded).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from anomalyops.components.data.augment import scale_brightness
from anomalyops.components.data.datasets import FolderDataset
from anomalyops.components.data.synthetic import paste_defects
from anomalyops.components.deploy.export import EXTERNAL_DATA_BYTES, export_onnx
from anomalyops.components.detectors import DETECTORS, Prediction, create
from anomalyops.components.detectors.auto import (
    auto_settings,
    gain_reference,
    training_set_statistics,
    whole_image_size,
)
from anomalyops.components.detectors.patchcore.search import build_index, recall_at_1, resolve
from anomalyops.components.evaluation.metrics import auroc, pixel_metrics
from anomalyops.components.training.folds import session_folds
from anomalyops.components.training.thresholds import calibrate

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1].parent / "shared" / "data"
DATASETS = {
    "bottle": DATA / "mvtec_ad" / "bottle",
    "tile": DATA / "magnetic_tile" / "tile",
    "weld": DATA / "battery_weld" / "weld",
    "transistor": DATA / "mvtec_ad" / "transistor",
    "macaroni1": DATA / "visa" / "macaroni1",
}
# Pasted defects of 0.02-0.2 % of the image, a tenth of the usual (a thread or a fine
# scratch): what a resolution rule is chosen on (auto.py, two scales).
SMALL_DEFECTS = (0.0002, 0.002)
VARIANTS = {
    "default": {},
    "standardise": {"standardise": True},
    "raw": {"standardise": False},
    "as_taken": {"gain_reference": None},  # no gain undone (auto.py's gain_reference)
    "gained": {},  # the gain undone where auto.py would not (clipped sets; run_one)
    "coreset1": {"coreset_ratio": 0.01},  # the bank the 10 % default was chosen against
    "size512": {"input_size": (512, 512)},  # native resolution for 512² parts, one tile
    "one_scale": {"input_size": (256, 256)},  # 512² parts at 256² alone, the old default
    "whole_image": {},  # the default, tiled sets with a whole-image coarse scale (run_one)
    "stretch": {"keep_aspect": False},  # every image stretched to the input, as before
}


def shifted(images: np.ndarray, share: float = 0.02) -> np.ndarray:
    """IMAGES moved right and down by SHARE of their size: a part that sits a little off in
    its fixture. The uncovered band is the image mirrored at its edge (what a camera would
    see of a uniform surround); repeating the edge row instead drew a streak no camera
    makes, and on macaroni1 every shifted image's maximum sat in it (AUROC 0.581)."""
    dy, dx = (max(1, round(side * share)) for side in images.shape[1:3])
    padded = np.pad(images, ((0, 0), (dy, 0), (dx, 0), (0, 0)), mode="reflect")
    return padded[:, : images.shape[1], : images.shape[2]]


def search_recall(detector, images: np.ndarray) -> dict | None:
    """HNSW against exact search on these images' patches (None when search is exact)."""
    bank = detector.model.memory_bank.numpy()
    if resolve(detector.config.search, len(bank)) == "exact":
        return None
    with torch.inference_mode():
        embedding = detector.model.embed(torch.from_numpy(images))
    queries = embedding.permute(0, 2, 3, 1).reshape(-1, embedding.shape[1]).numpy()
    return recall_at_1(bank, queries, build_index(bank, "hnsw"))


def bank_columns(detector, test_images: np.ndarray) -> dict:
    """PatchCore's memory-bank columns (empty for detectors without a bank)."""
    if detector.kind != "patchcore":
        return {}
    bank = len(detector.model.memory_bank)
    coarse = detector.coarse
    return {
        "bank": bank,
        # A two-scale model's whole-image scale (its fit includes both scales' cross-fits)
        "coarse_input_size": list(coarse.config.input_size) if coarse else None,
        "coarse_bank": coarse.bank_sizes()[0] if coarse else None,
        "search": resolve(detector.config.search, bank),
        "recall": search_recall(detector, test_images[:: max(1, len(test_images) // 8)][:8]),
        "scratch_mb_per_image": detector.model.scratch_bytes_per_image() / 1e6,
        "max_batch_size": detector.model.max_batch_size(),
    }


def exported_graph(detector, images: np.ndarray, in_process: np.ndarray) -> dict:
    """ms/img of the exported ONNX graph in onnxruntime at batch 1, and its largest score
    gap to the in-process path relative to the score range (the parity that serving has)."""
    import onnxruntime

    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "model.onnx"
        export_onnx(detector, path, EXTERNAL_DATA_BYTES)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        session = onnxruntime.InferenceSession(str(path), options, ["CPUExecutionProvider"])
        session.run(None, {"image": images[:1]})  # warm-up
        started = time.perf_counter()
        scores = np.concatenate([session.run(None, {"image": images[i : i + 1]})[1]
                                 for i in range(len(images))])  # fmt: skip
        ms = 1000 * (time.perf_counter() - started) / len(images)
    spread = float(np.ptp(in_process)) or 1.0
    return {"onnx_ms_per_image": ms,
            "onnx_max_gap": float(np.abs(scores - in_process).max() / spread)}  # fmt: skip


def per_defect_type(test, flagged: np.ndarray, scores: np.ndarray) -> dict:
    """Per defect type: the share the shipped threshold flags and image AUROC against
    test/good (logical types such as transistor's `misplaced` show apart)."""
    kinds = np.array([sample.defect_type for sample in test.samples])
    good = kinds == "good"
    return {
        kind: {
            "flagged": float(flagged[kinds == kind].mean()),
            "image_auroc": auroc(
                np.r_[np.zeros(good.sum()), np.ones((kinds == kind).sum())],
                np.r_[scores[good], scores[kinds == kind]],
            ),
        }
        for kind in sorted(set(kinds) - {"good"})
    }


def commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, cwd=HERE, check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None


def run_one(name: str, kind: str, variant: str, dataset: FolderDataset) -> dict:
    paths = [s.path for s in dataset.train_samples()]
    settings = auto_settings(kind, paths, VARIANTS[variant])
    if variant == "whole_image" and settings.get("tile_size"):
        settings["coarse_size"] = whole_image_size(settings["input_size"])
    if variant == "gained" and kind == "patchcore":
        settings["gain_reference"] = gain_reference(training_set_statistics(paths))
    detector = create(kind, **settings)
    size, keep_aspect = detector.config.input_size, detector.config.keep_aspect
    train = dataset.load_train(size, progress=False, keep_aspect=keep_aspect)
    test = dataset.load_test(size, progress=False, keep_aspect=keep_aspect)
    folds = session_folds(len(train.images))
    started = time.perf_counter()
    detector.fit(train.images, progress=False)
    fit_s = time.perf_counter() - started
    pasted, pasted_masks = paste_defects(train.images, seed=1, boxes=train.boxes)
    small, _ = paste_defects(train.images, seed=2, area=SMALL_DEFECTS, boxes=train.boxes)
    started = time.perf_counter()
    scored = np.concatenate([train.images, pasted, small])
    every = detector.out_of_fold(train.images, folds, progress=False, scored=scored)
    cross_fit_s = time.perf_counter() - started  # shipped path + scoring the pasted copies
    n = len(train.images)
    good = Prediction(every.scores[:n], every.maps[:n])
    bad = Prediction(every.scores[n : 2 * n], every.maps[n : 2 * n])
    small_scores = every.scores[2 * n :]
    val_small = auroc(np.r_[np.zeros(n), np.ones(n)], np.r_[good.scores, small_scores])
    threshold = calibrate(good.scores, 0.01)
    val_labels = np.r_[np.zeros(len(train.images)), np.ones(len(pasted))]
    val_masks = np.concatenate([np.zeros_like(pasted_masks), pasted_masks])
    val_maps = np.concatenate([good.maps, bad.maps])
    if train.boxes is not None:  # the pixels the images fill, not a kept aspect's border
        inside = np.concatenate([train.content] * 2)
        val_masks, val_maps = val_masks[inside], val_maps[inside]

    detector.predict(test.images[:2])  # warm-up
    started = time.perf_counter()
    prediction = detector.predict(test.images)
    ms_per_image = 1000 * (time.perf_counter() - started) / len(test.images)
    megapixels = size[0] * size[1] / 1e6
    lighting = {
        f"image_auroc_x{gain}": auroc(
            test.labels, detector.predict(scale_brightness(test.images, gain)).scores
        )
        for gain in (0.9, 1.1)
    }
    shift_auroc = auroc(test.labels, detector.predict(shifted(test.images)).scores)
    flagged = prediction.scores > threshold.threshold
    timed = np.flatnonzero(np.arange(len(test.images)) % max(1, len(test.images) // 8) == 0)[:8]
    row = {
        "dataset": name,
        "detector": kind,
        "variant": variant,
        "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()},
        "input_size": list(size),
        "tiles": detector.model.grid.count if hasattr(detector.model, "grid") else 1,
        "val_image_auroc": auroc(val_labels, np.r_[good.scores, bad.scores]),
        "val_pixel_auroc": auroc(val_masks, val_maps),
        "val_small_image_auroc": val_small,
        # pasted defects above the shipped threshold: the validation side of defects_flagged
        "val_defects_flagged": float((bad.scores > threshold.threshold).mean()),
        "val_small_defects_flagged": float((small_scores > threshold.threshold).mean()),
        "image_auroc": auroc(test.labels, prediction.scores),
        "pixel_auroc": None,
        "aupro": None,
        **lighting,
        "image_auroc_shift": shift_auroc,
        "shift_padding": "reflect",  # rows without it repeated the edge (see shifted)
        "test_good_flagged": int(flagged[test.labels == 0].sum()),
        "test_good": int((test.labels == 0).sum()),
        "test_good_fpr": float(flagged[test.labels == 0].mean()),
        "defects_flagged": float(flagged[test.labels == 1].mean()),
        "per_defect_type": per_defect_type(test, flagged, prediction.scores),
        "threshold": threshold.to_dict(),
        "fit_s": fit_s,
        "cross_fit_s": cross_fit_s,
        "ms_per_image": ms_per_image,
        "ms_per_megapixel": ms_per_image / megapixels,
        **exported_graph(detector, test.images[timed], prediction.scores[timed]),
        **bank_columns(detector, test.images),
        "train_images": len(train.images),
        "calibration_folds": len(folds),
        "test_images": len(test.images),
        "load_average": os.getloadavg()[0],
        "commit": commit(),
        "date": time.strftime("%Y-%m-%d"),
    }
    if test.masks is not None:
        known = test.pixel_labelled
        content = None if test.boxes is None else test.content[known]
        row |= pixel_metrics(test.masks[known], prediction.maps[known], content)
    return row


def cell(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def flagged_cell(row: dict) -> str:
    """Pasted (and small pasted) defects above the shipped threshold; older rows: –."""
    if "val_defects_flagged" not in row:
        return "–"
    return f"{row['val_defects_flagged']:.2f} ({row['val_small_defects_flagged']:.2f})"


def markdown(rows: list[dict]) -> str:
    lines = [
        "| dataset | detector | variant | input (tiles) | val img | val small | val px | "
        "val flagged (small) | "
        "**image AUROC** | "
        "**pixel AUROC** | AUPRO | ×0.9 | ×1.1 | shift | **good flagged** (FPR, target 1 %) | "
        "**defects flagged** | fit s (+x-fit) | ms/img | ms/img ONNX | "
        "ms/MP | bank (search, recall@1) | scratch MB/img (max batch) | measured (load) |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        "---:|---:|---|---|---|",
    ]
    for r in rows:
        recall = f", {r['recall']['recall_at_1']:.3f}" if r.get("recall") else ""
        size = f"{r['input_size'][0]}×{r['input_size'][1]} ({r['tiles']})"
        bank = f"{r['bank']} ({r['search']}{recall})" if "bank" in r else "–"
        if r.get("coarse_input_size"):  # two scales
            size += " + {}×{}".format(*r["coarse_input_size"])
            bank += f" + {r['coarse_bank']}"
        scratch = (f"{cell(r['scratch_mb_per_image'], 1)} ({r['max_batch_size']})"
                   if "bank" in r else "–")  # fmt: skip
        lines.append(
            f"| {r['dataset']} | {r.get('detector', 'patchcore')} | {r['variant']} | {size} | "
            f"{cell(r['val_image_auroc'])} | {cell(r.get('val_small_image_auroc'))} | "
            f"{cell(r['val_pixel_auroc'])} | {flagged_cell(r)} | {cell(r['image_auroc'])} | "
            f"{cell(r['pixel_auroc'])} | {cell(r['aupro'])} | {cell(r['image_auroc_x0.9'])} | "
            f"{cell(r['image_auroc_x1.1'])} | {cell(r['image_auroc_shift'])} | "
            f"{r['test_good_flagged']}/{r['test_good']} ({cell(r['test_good_fpr'])}) | "
            f"{cell(r['defects_flagged'])} | "
            f"{cell(r['fit_s'], 1)} (+{cell(r['cross_fit_s'], 1)}) | "
            f"{cell(r['ms_per_image'], 0)} | {cell(r.get('onnx_ms_per_image'), 0)} | "
            f"{cell(r['ms_per_megapixel'], 0)} | {bank} | {scratch} | "
            f"{r.get('date', '–')} ({cell(r.get('load_average'), 1)}) |"
        )
    return "\n".join(lines)


# Published MVTec AD means over its 15 categories (image AUROC, %), each from its paper,
# on the paper's backbone and resolution: context for the rows, not a like-for-like match.
ANCHORS = {
    "patchcore": "99.2 (WideResNet-50)",
    "padim": "97.9 (WideResNet-50)",
    "stpm": "95.5 (ResNet-18)",
    "efficientad": "98.8 EfficientAD-S; MVTec LOCO 90.0",
    "cflow": "98.3 (WideResNet-50)",
    "autoencoder": "– (MemAE: none on MVTec AD)",
}
LOGICAL = {"transistor": "misplaced"}  # the logical anomaly types of these sets


def families_markdown(rows: list[dict]) -> str:
    """Every family's `default` row on every dataset, then each family's means: the
    comparison the README's guide to picking a detector rests on."""

    rows = [r for r in rows if r["variant"] == "default"]
    rank = {name: i for i, name in enumerate(DATASETS)}
    rows.sort(key=lambda r: (rank[r["dataset"]], order(r)))
    lines = [
        "| dataset | detector | val img | **image AUROC** | pixel AUROC | AUPRO | "
        "good flagged | **defects flagged** | logical flagged (AUROC) | fit s (+x-fit) | "
        "ms/img | ms/img ONNX |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        logical = (r.get("per_defect_type") or {}).get(LOGICAL.get(r["dataset"], ""))
        logical_cell = (f"{logical['flagged']:.2f} ({logical['image_auroc']:.3f})"
                        if logical else "–")  # fmt: skip
        lines.append(
            f"| {r['dataset']} | {key(r)[0]} | {cell(r['val_image_auroc'])} | "
            f"{cell(r['image_auroc'])} | {cell(r['pixel_auroc'])} | {cell(r['aupro'])} | "
            f"{r['test_good_flagged']}/{r['test_good']} | {cell(r['defects_flagged'], 2)} | "
            f"{logical_cell} | {cell(r['fit_s'], 0)} (+{cell(r['cross_fit_s'], 0)}) | "
            f"{cell(r['ms_per_image'], 0)} | {cell(r.get('onnx_ms_per_image'), 0)} |"
        )
    kinds = sorted({key(r)[0] for r in rows}, key=lambda k: (k != "patchcore", k))
    measured = {(r["dataset"], key(r)[0]) for r in rows}
    shared = [name for name in DATASETS if all((name, k) in measured for k in kinds)]
    rows = [r for r in rows if r["dataset"] in shared]
    lines += [
        "",
        f"Means over the sets every family has ({', '.join(shared) or 'none'}):",
        "",
        "| detector | datasets | mean val img | **mean image AUROC** (lowest) | "
        "mean pixel AUROC | good flagged | mean defects flagged | mean fit s | "
        "mean ms/img | mean ms/img ONNX | published MVTec AD mean |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]

    def mean(values):
        values = [v for v in values if v is not None]
        return float(np.mean(values)) if values else None

    for kind in kinds if rows else []:
        mine = [r for r in rows if key(r)[0] == kind]
        lines.append(
            f"| {kind} | {len(mine)} | {cell(mean(r['val_image_auroc'] for r in mine))} | "
            f"{cell(mean(r['image_auroc'] for r in mine))} "
            f"({cell(min(r['image_auroc'] for r in mine))}) | "
            f"{cell(mean(r['pixel_auroc'] for r in mine))} | "
            f"{sum(r['test_good_flagged'] for r in mine)}/{sum(r['test_good'] for r in mine)} | "
            f"{cell(mean(r['defects_flagged'] for r in mine), 2)} | "
            f"{cell(mean(r['fit_s'] for r in mine), 0)} | "
            f"{cell(mean(r['ms_per_image'] for r in mine), 0)} | "
            f"{cell(mean(r.get('onnx_ms_per_image') for r in mine), 0)} | "
            f"{ANCHORS.get(kind, '–')} |"
        )
    return "\n".join(lines)


README = HERE.parents[1] / "README.md"
# README block → its table in results/ (fit-scaling.md is fit_scaling.py's)
BLOCKS = {
    "detectors": "detectors.md",
    "families": "detector-families.md",
    "fit-scaling": "fit-scaling.md",
}


def readme_with_tables(readme: str, results: Path) -> str:
    """README's generated blocks (`<!-- NAME: begin ... -->` to `<!-- NAME: end -->`)
    holding the results tables, so no number in them is typed by hand."""
    for name, file in BLOCKS.items():
        begin = readme.index(f"<!-- {name}: begin")
        begin = readme.index("\n", begin) + 1
        end = readme.index(f"<!-- {name}: end -->", begin)
        readme = readme[:begin] + (results / file).read_text() + readme[end:]
    return readme


def key(row: dict) -> tuple[str, str]:
    return row.get("detector", "patchcore"), row["variant"]


def order(row: dict) -> tuple[bool, str, str]:
    """PatchCore (the default) first, then the other families by name."""
    return key(row)[0] != "patchcore", *key(row)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--detectors", default="patchcore",
                        help=f"comma-separated, of {', '.join(sorted(DETECTORS))}")  # fmt: skip
    parser.add_argument("--variants", default="default")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--tables-only", action="store_true",
                        help="rewrite the tables from the results files, run nothing")  # fmt: skip
    args = parser.parse_args()
    if args.tables_only:
        args.datasets = ""
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {
        "backbone": "efficientnet_lite0",
        "cpu_threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
    }
    for name in filter(None, args.datasets.split(",")):
        dataset = FolderDataset(DATASETS[name])
        stats = training_set_statistics([s.path for s in dataset.train_samples()])
        del stats["sizes"]  # the rules' input; the median size stays
        path = args.out / f"detectors-{name}.json"
        kept = json.loads(path.read_text())["rows"] if path.is_file() else []
        rows = []
        for kind in args.detectors.split(","):
            for variant in args.variants.split(","):
                rows.append(run_one(name, kind, variant, dataset))
                print(markdown(rows[-1:]).splitlines()[-1], flush=True)
                # Written after every row: a sitting cut short keeps what it measured.
                ran = {key(row) for row in rows}
                merged = sorted([r for r in kept if key(r) not in ran] + rows, key=order)
                result = {"meta": {**meta, "train_statistics": stats}, "rows": merged}
                path.write_text(json.dumps(result, indent=2, default=list))
    every = [
        row
        for name in DATASETS
        if (args.out / f"detectors-{name}.json").is_file()
        for row in json.loads((args.out / f"detectors-{name}.json").read_text())["rows"]
    ]
    table = markdown(every)
    print("\n" + table)
    (args.out / "detectors.md").write_text(table + "\n")
    (args.out / "detector-families.md").write_text(families_markdown(every) + "\n")
    if args.out == HERE / "results":
        README.write_text(readme_with_tables(README.read_text(), args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
