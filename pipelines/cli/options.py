"""Options shared by several command groups. The bottom of the CLI: it imports none of them."""

from __future__ import annotations

import argparse
import logging

from anomalyops.components.training.folds import FOLDS

# The registries' names, spelled out so that building the parser imports no torch;
# a test keeps them equal to components.detectors.DETECTORS and backbones.BACKBONES.
DETECTOR_KINDS = ("autoencoder", "cflow", "efficientad", "padim", "patchcore", "stpm")
BACKBONE_NAMES = ("efficientnet_lite0", "mobilenet_v2", "resnet18", "wide_resnet50_2")


def variant_name(value: str) -> str:
    """argparse type for variant/model names: the one rule in serving/contract/names.py."""
    from anomalyops.serving.contract.names import InvalidNameError, check_name

    try:
        return check_name(value)
    except InvalidNameError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def model_settings(args: argparse.Namespace) -> dict:
    """The detector settings the model options (add_model_options) asked for."""
    settings = {"backbone": args.backbone}
    if args.size is not None:
        settings["input_size"] = (args.size, args.size)
    if args.standardise is not None:
        settings["standardise"] = args.standardise
    if args.detector == "patchcore" and args.coreset is not None:
        settings["coreset_ratio"] = args.coreset
    if args.steps is not None:  # a detector that does not learn refuses it by name
        settings["steps"] = args.steps
    if args.time_budget is not None:
        settings["time_budget_s"] = args.time_budget
    return settings


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """--detector, --backbone, --size, --coreset, --standardise, --fpr and the rest of fit's."""
    parser.add_argument("--detector", choices=DETECTOR_KINDS, default="patchcore")
    parser.add_argument("--backbone", choices=BACKBONE_NAMES, default="efficientnet_lite0")
    parser.add_argument(
        "--size",
        type=int,
        help="square input size in pixels (default: 256, or tiles near native resolution "
        "for images over four times that area)",
    )
    parser.add_argument("--coreset", type=float, help="PatchCore coreset ratio (default 0.1)")
    parser.add_argument(
        "--standardise",
        action=argparse.BooleanOptionalAction,
        help="standardise each image's intensity (default: on where train/good brightness "
        "varies by more than 10 %%)",
    )
    parser.add_argument(
        "--steps",
        type=positive_int,
        help="training steps of a detector that learns (stpm, efficientad, cflow, "
        "autoencoder; default: its CPU-sized default)",
    )
    parser.add_argument(
        "--time-budget",
        type=finite_positive,
        help="seconds a learning detector may train for each fit; stops early and keeps "
        "the best weights so far (default: no limit, the steps decide)",
    )
    parser.add_argument("--fpr", type=float, default=0.01, help="target false-positive rate")
    parser.add_argument(
        "--calibration-folds",
        type=int,
        default=FOLDS,
        help="cross-fitting folds (contiguous in file-name order) whose out-of-fold scores "
        "set the threshold; the model itself learns from all of train/good",
    )
    add_device_option(parser)


def threshold_value(value: str) -> float:
    """argparse type for --threshold: the one threshold rule (serving/contract/thresholds.py)."""
    from anomalyops.serving.contract.thresholds import ThresholdError, check_threshold

    try:
        return check_threshold(float(value), "--threshold")
    except (ValueError, ThresholdError) as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def finite_positive(value: str) -> float:
    """argparse type for settings such as --sensitivity: a finite number above zero."""
    import math

    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not math.isfinite(number) or number <= 0:
        raise argparse.ArgumentTypeError(f"{value!r}: give a finite number above 0")
    return number


LOG_DB_HELP = "prediction log: a SQLite path, a database URL or env:NAME (the URL in $NAME)"


def existing_log(location: str, files: str | None = None):  # -> PredictionLog
    """Open a prediction log (a path or a database URL) that must already exist: a
    mistyped path is an error naming it, never a new empty log."""
    from anomalyops.serving.predictions.log import PredictionLog

    try:
        return PredictionLog(location, files, create=False)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"--log-db {error}") from None


def add_threads_option(parser: argparse.ArgumentParser) -> None:
    """--threads: how many CPU threads torch and faiss may use in this command."""
    parser.add_argument(
        "--threads",
        type=positive_int,
        help="CPU threads for torch and faiss (default: the CPUs this process is given: "
        "its affinity mask and cgroup CPU quota, or ANOMALYOPS_THREADS)",
    )


def use_threads(args: argparse.Namespace) -> None:
    """Size the thread pools before torch loads: pools sized for the whole node fight
    over what a busy node or a CPU limit leaves (serving/threads.py)."""
    from anomalyops.serving.threads import apply, cpu_budget

    budget = apply(cpu_budget(args.threads))
    logging.getLogger("anomalyops").info("threads: %d (%s)", budget.threads, budget.source)


def add_device_option(parser: argparse.ArgumentParser) -> None:
    """--device: where torch computes (components/detectors/device.py)."""
    parser.add_argument(
        "--device",
        default="auto",
        help="auto (a CUDA GPU when torch sees one, else the CPU), cpu, cuda or cuda:N",
    )


def positive_int(value: str) -> int:
    """argparse type for counts such as --threads: a whole number of at least 1."""
    if not value.strip().isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{value!r}: give a whole number of at least 1")
    return int(value)
