"""CLI commands `drift check`, `drift list` and `log prune`; registered in cli.py.

Imports stay inside the commands: Evidently alone takes seconds to load.
"""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from anomalyops.pipelines.cli.options import LOG_DB_HELP

DEFAULT_OUT = "runs/drift"
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(value: str) -> float:
    """argparse type: '90m', '6h', '30d' -> seconds."""
    found = _DURATION.match(value.strip())
    if not found:
        raise argparse.ArgumentTypeError(f"{value!r} is not a duration like 90m, 6h or 30d")
    return float(found.group(1)) * _UNITS[found.group(2)]


def drift_settings(args: argparse.Namespace) -> dict:
    """The DriftSettings fields given on the command line (the rest keep their defaults)."""
    given = {
        "window": args.window,
        "min_samples": args.min_samples,
        "sensitivity": args.sensitivity,
        "cooldown_s": args.cooldown,
    }
    return {k: v for k, v in given.items() if v is not None}


def cmd_drift_check(args: argparse.Namespace) -> int:
    from anomalyops.components.drift.check import DriftSettings, check_drift
    from anomalyops.components.drift.reference import resolve_reference
    from anomalyops.pipelines.cli.options import existing_log

    settings = DriftSettings(**drift_settings(args))
    source = resolve_reference(
        args.variant, args.reference, args.tracking_uri, Path(args.out) / args.variant
    )
    version = args.model_version or source.model_version
    with existing_log(args.log_db) as log:
        verdict = check_drift(
            log, args.variant, source.reference, args.out, version, settings, source.description
        )
    print(f"{verdict.variant}: {verdict.status.upper()}: {verdict.reason}")
    print(
        f"window: {verdict.samples} predictions scored by "
        f"{'v' + version if version else 'any version'}; reference: {source.description}"
    )
    for name, column in verdict.columns.items():
        flag = "DRIFT" if column["drifted"] else "ok"
        print(
            f"  {name:<10} distance {column['distance']:.3f} / threshold "
            f"{column['threshold']:.3f} (ratio {column['ratio']:.2f}) {flag}"
        )
    print(f"verdict: {verdict.verdict_path}")
    if verdict.report_path:
        print(f"report: {verdict.report_path}")
    return 1 if verdict.drifting else 0


def cmd_drift_list(args: argparse.Namespace) -> int:
    from anomalyops.components.drift.check import list_checks

    checks = list_checks(args.out, args.variant)
    if not checks:
        print(f"no drift checks of {args.variant} under {Path(args.out).resolve()}")
        return 0
    for check in checks[-args.limit :]:
        ratio = f"{check['ratio']:.2f}" if check.get("ratio") is not None else "-"
        alert = "ALERT" if check["drift"] else ""
        print(
            f"{check['checked_at']}\tv{check['model_version'] or '?'}\t{check['status']}\t"
            f"ratio {ratio}\t{check['samples']} rows\t{alert}"
        )
        print(f"\t{check.get('report_path') or check['verdict_path']}")
    return 0


def cmd_log_prune(args: argparse.Namespace) -> int:
    from anomalyops.pipelines.cli.options import existing_log

    before = (datetime.now(UTC) - timedelta(seconds=args.older_than)).isoformat()
    with existing_log(args.log_db, args.log_files) as log:
        deleted = log.prune(before)
        orphans = log.prune_files(before)
        left = log.count()
        where = log.where
    print(
        f"{where}: deleted {deleted} unreviewed predictions older than {before} (and their "
        f"kept files, plus {orphans} files no row names); {left} rows left, reviewed ones kept"
    )
    return 0


def add_settings_options(parser: argparse.ArgumentParser) -> None:
    """--window, --min-samples, --sensitivity, --cooldown (read back by drift_settings)."""
    from anomalyops.pipelines.cli.options import finite_positive

    # Defaults live in components/drift.DriftSettings (chosen in tests/benchmarks/drift.py).
    parser.add_argument("--window", type=int, help="newest predictions compared (default 1000)")
    parser.add_argument(
        "--min-samples", type=int, help="fewer rows: 'insufficient data', never an alert"
    )
    parser.add_argument(
        "--sensitivity",
        type=finite_positive,
        help="column threshold = sensitivity / sqrt(reference size); higher "
        "alerts less (default 5)",
    )
    parser.add_argument(
        "--cooldown", type=duration, help="no new alert this long after one (default 24h)"
    )


def add_drift_commands(commands: argparse._SubParsersAction) -> None:
    """Register `drift check|list` and `log prune` under the main parser."""
    drift = commands.add_parser("drift", help="check served predictions for drift (Evidently)")
    actions = drift.add_subparsers(dest="action", required=True)

    check = actions.add_parser(
        "check",
        help="compare the newest predictions with the champion's reference",
        description="Exit code: 0 no drift (or too little data), 1 drifting, 2 error.",
    )
    check.add_argument("--variant", required=True, help="product variant (registered model)")
    check.add_argument("--log-db", required=True, help=LOG_DB_HELP)
    source = check.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--reference", help="model, export or Triton version folder, or a reference.json"
    )
    source.add_argument("--tracking-uri", help="MLflow: the champion's registered reference")
    check.add_argument(
        "--model-version",
        help="rows of this version count (default: the reference's model version)",
    )
    add_settings_options(check)
    check.add_argument("--out", default=DEFAULT_OUT, help="verdicts, reports and alert state")
    check.set_defaults(func=cmd_drift_check)

    listing = actions.add_parser("list", help="the kept verdicts and reports of a variant")
    listing.add_argument("--variant", required=True)
    listing.add_argument("--out", default=DEFAULT_OUT)
    listing.add_argument("--limit", type=int, default=20, help="newest checks shown")
    listing.set_defaults(func=cmd_drift_list)

    log = commands.add_parser("log", help="prediction log maintenance")
    log_actions = log.add_subparsers(dest="action", required=True)
    prune = log_actions.add_parser("prune", help="delete old unreviewed predictions (retention)")
    prune.add_argument("--log-db", required=True, help=LOG_DB_HELP)
    prune.add_argument("--log-files", help="where kept images are (a folder or s3://...; "
                       "default: beside a SQLite log)")  # fmt: skip
    prune.add_argument("--older-than", type=duration, required=True, help="e.g. 30d")
    prune.set_defaults(func=cmd_log_prune)
