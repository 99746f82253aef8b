"""`anomalyops` command line: fit, predict, evaluate, demo.

Imports stay inside the commands: torch, MLflow and KFP take seconds to load, and
`--help` or a mistyped argument must answer at once (tests/pipelines/cli/test_cli_startup.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from anomalyops.pipelines.cli import drift as drift_commands
from anomalyops.pipelines.cli import pipeline as pipeline_commands
from anomalyops.pipelines.cli import review as review_commands
from anomalyops.pipelines.cli import serving as serving_commands
from anomalyops.pipelines.cli.options import (
    BACKBONE_NAMES,
    add_device_option,
    add_model_options,
    add_threads_option,
    model_settings,
    threshold_value,
    use_threads,
)

if TYPE_CHECKING:  # torch behind it: the commands import it when they run
    from anomalyops.components.training.train import TrainResult

log = logging.getLogger("anomalyops")


def print_calibration(result: TrainResult) -> None:
    """The image threshold and the good images scored highest out of fold: at under
    1 / target images the highest of them is the threshold, so a reviewer checks it."""
    print(f"image {result.image_threshold.summary()}")
    highest = result.summary["highest_held_out"][:3]
    print("highest out-of-fold good scores: "
          + ", ".join(f"{h['file']} {h['score']:.4g}" for h in highest))  # fmt: skip


def cmd_fit(args: argparse.Namespace) -> int:
    from anomalyops.components.training.model_dir import ModelOutput

    # refuse a bad --out (or one holding the data) before seconds of imports
    ModelOutput(args.out, args.force, protect=(args.data,))
    use_threads(args)
    from anomalyops.components.training.train import train

    result = train(
        args.data,
        args.out,
        args.detector,
        model_settings(args),
        args.calibration_folds,
        args.fpr,
        on_error=args.on_error,
        force=args.force,
        device=args.device,
    )
    print(f"saved {args.detector} to {result.model_dir}")
    print_calibration(result)
    for skipped in result.summary["skipped"]:
        print(f"skipped {skipped}")
    return 0


def cmd_adapt(args: argparse.Namespace) -> int:
    use_threads(args)
    from anomalyops.components.data.augment import Augmentation
    from anomalyops.components.training.fewshot import adapt

    settings = None if args.model else {"backbone": args.backbone,
                                         "input_size": (args.size, args.size)}  # fmt: skip
    result = adapt(
        args.data,
        args.out,
        base=args.model,
        settings=settings,
        augmentation=Augmentation(views=args.views),
        target_fpr=args.fpr,
        on_error=args.on_error,
        force=args.force,
        device=args.device,
    )
    start = f"extended {args.model}" if args.model else "started a new PatchCore"
    print(f"{start} with {result.summary['train_images']} good images "
          f"(+{result.summary['added_bank_rows']} memory-bank rows)")  # fmt: skip
    print(f"image threshold: {result.thresholds['image']['note']}")
    for skipped in result.summary["skipped"]:
        print(f"skipped {skipped}")
    print(f"saved to {Path(args.out).resolve()}")
    print(f"export it for serving: anomalyops export --model {args.out} --out EXPORT")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    use_threads(args)
    from anomalyops.components.evaluation.evaluate import as_table, evaluate

    report = args.report or Path(args.model) / "report.html"
    metrics = evaluate(args.model, args.data, report, on_error=args.on_error, device=args.device)
    print(as_table(metrics))
    print(f"report: {Path(report).resolve()}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    use_threads(args)
    import numpy as np

    from anomalyops.components.reports.report import map_range, overlay
    from anomalyops.components.training.train import load_trained
    from anomalyops.serving.contract.frame_check import FrameCheck
    from anomalyops.serving.contract.labels import label
    from anomalyops.serving.contract.reference import REFERENCE_FILE, load_reference
    from anomalyops.serving.images.decode import (
        ImageDecodeError,
        content_box,
        decode_image,
        resize,
    )
    from anomalyops.serving.images.statistics import image_statistics

    detector, thresholds = load_trained(args.model, args.device)
    threshold = args.threshold if args.threshold is not None else thresholds["image"]["threshold"]
    size = detector.config.input_size
    frames = None
    if (Path(args.model) / REFERENCE_FILE).is_file():  # damaged: an error, never ignored
        frames = FrameCheck.from_reference(load_reference(args.model), size)
    else:
        print(f"note: unusable frames are not flagged: {args.model} has no {REFERENCE_FILE}",
              file=sys.stderr)  # fmt: skip
    keep_aspect = detector.config.keep_aspect
    images, names, problems, boxes, failures = [], [], [], [], 0
    for path in args.images:
        try:
            source = decode_image(path)
        except ImageDecodeError as error:
            print(f"error: {error}", file=sys.stderr)
            failures += 1
            continue
        images.append(resize(source, size, keep_aspect))
        boxes.append(content_box(source.shape[:2], size, keep_aspect))
        names.append(path)
        statistics = image_statistics(images[-1][boxes[-1]])
        found = frames.problems(statistics, source.shape[:2]) if frames else []
        problems.append(found)
    if not images:
        return 2
    prediction = detector.predict(np.stack(images), progress=len(images) > 8)
    rows = []
    for name, score, found in zip(names, prediction.scores, problems, strict=True):
        verdict = label(float(score), threshold, found)
        rows.append({"image": name, "score": float(score), "label": verdict, "problems": found})
        print(f"{name}\t{score:.4f}\t{verdict}")
        if found:
            print(f"unusable: {name}: {'; '.join(found)}", file=sys.stderr)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        vmin, vmax = map_range(prediction.maps)
        from PIL import Image

        for name, image, anomaly_map, box in zip(names, images, prediction.maps, boxes,
                                                 strict=True):  # fmt: skip
            Image.fromarray(overlay(image[box], anomaly_map[box], vmin, vmax)).save(
                out / f"{Path(name).stem}_map.png"
            )
        (out / "predictions.json").write_text(json.dumps(rows, indent=2))
        print(f"anomaly maps and predictions.json in {out}")
    return 1 if failures else 0


def cmd_demo(args: argparse.Namespace) -> int:
    use_threads(args)
    from anomalyops.components.data.synthetic import make_synthetic_dataset
    from anomalyops.components.evaluation.evaluate import as_table, evaluate
    from anomalyops.components.training.train import train

    out = Path(args.out)
    data = (
        Path(args.data) if args.data else make_synthetic_dataset(Path(tempfile.mkdtemp()) / "parts")
    )
    print(f"data: {data}{'' if args.data else ' (synthetic parts, demo only)'}")
    settings = model_settings(args)
    # A demo reruns into the same folder: replacing its own previous model is the point.
    result = train(data, out / "model", args.detector, settings, args.calibration_folds,
                   args.fpr, force=True, device=args.device)  # fmt: skip
    print_calibration(result)
    metrics = evaluate(out / "model", data, out / "report.html", device=args.device)
    print(as_table(metrics))
    print(f"model: {(out / 'model').resolve()}\nreport: {(out / 'report.html').resolve()}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="anomalyops", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    commands = parser.add_subparsers(dest="command", required=True)

    fit = commands.add_parser("fit", help="train a detector on good images")
    fit.add_argument("--data", required=True, help="dataset folder (MVTec AD layout)")
    fit.add_argument("--out", required=True, help="where to save the model")
    fit.add_argument(
        "--force", action="store_true", help="replace a model already in --out (as a whole)"
    )
    fit.add_argument(
        "--on-error",
        choices=["skip", "raise"],
        default="skip",
        help="skip corrupt images with a warning, or stop",
    )
    add_model_options(fit)
    add_threads_option(fit)
    fit.set_defaults(func=cmd_fit)

    adapt = commands.add_parser(
        "adapt", help="few-shot: extend a model with k good images of a new state"
    )
    adapt.add_argument("--data", required=True, help="folder of 1 to 16 new good images")
    adapt.add_argument("--model", help="trained PatchCore to extend; a new variant when omitted")
    adapt.add_argument("--out", required=True, help="where to save the adapted model")
    adapt.add_argument("--views", type=int, default=8, help="augmented views per image")
    adapt.add_argument("--force", action="store_true",
                       help="replace an adapted model already in --out (as a whole)")  # fmt: skip
    adapt.add_argument("--fpr", type=float, default=0.01, help="target false-positive rate")
    adapt.add_argument("--backbone", choices=BACKBONE_NAMES, default="efficientnet_lite0")
    adapt.add_argument("--size", type=int, default=256, help="a new variant's input size")
    adapt.add_argument("--on-error", choices=["skip", "raise"], default="skip")
    add_threads_option(adapt)
    add_device_option(adapt)
    adapt.set_defaults(func=cmd_adapt)

    predict = commands.add_parser("predict", help="score images with a trained model")
    predict.add_argument("--model", required=True)
    predict.add_argument("--threshold", type=threshold_value,
                         help="override the calibrated threshold")  # fmt: skip
    predict.add_argument("--out", help="folder for anomaly-map pictures and predictions.json")
    predict.add_argument("images", nargs="+")
    add_threads_option(predict)
    add_device_option(predict)
    predict.set_defaults(func=cmd_predict)

    evaluate = commands.add_parser("evaluate", help="metrics and HTML report on the test split")
    evaluate.add_argument("--model", required=True)
    evaluate.add_argument("--data", required=True)
    evaluate.add_argument("--report", help="HTML report path (default MODEL/report.html)")
    evaluate.add_argument("--on-error", choices=["skip", "raise"], default="skip")
    add_threads_option(evaluate)
    add_device_option(evaluate)
    evaluate.set_defaults(func=cmd_evaluate)

    demo = commands.add_parser("demo", help="train and evaluate end to end")
    demo.add_argument("--data", help="dataset folder; synthetic parts when omitted")
    demo.add_argument("--out", default="runs/demo")
    add_model_options(demo)
    add_threads_option(demo)
    demo.set_defaults(func=cmd_demo)
    serving_commands.add_serve(commands)
    serving_commands.add_rollback(commands)
    serving_commands.add_infer(commands)
    serving_commands.add_export(commands)
    pipeline_commands.add_pipeline_commands(commands)
    drift_commands.add_drift_commands(commands)
    review_commands.add_review_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.func(args)
    except (ValueError, OSError, RuntimeError) as error:
        # Bad input, file-system faults, registry/model errors: one line naming the
        # file or field (the messages do); the traceback only with --verbose.
        if args.verbose:
            log.exception("traceback")
        print(f"error: {str(error).strip() or type(error).__name__}", file=sys.stderr)
        return 2
