"""CLI `anomalyops review list | mark | serve`: QA verdicts on logged predictions.

Registered in cli.py. A false alarm joins the normal set at the next retraining, a
confirmed defect the evaluation set; both are stored with who and when beside the
prediction log (serving/predictions/log.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import unicodedata

from anomalyops.pipelines.cli.options import LOG_DB_HELP, existing_log

FILTER_VERDICTS = ("any", "unreviewed", "false_alarm", "confirmed_defect")
LABELS = ("anomalous", "good", "unusable", "any")  # anomalous: what the detector flagged
COLUMNS = ("id", "time", "variant", "line", "model_version", "score", "threshold", "label",
           "verdict", "reviewer")  # fmt: skip


def _cell(value: object) -> str:
    """A table cell that cannot move the cursor, colour the terminal or forge a row:
    control and formatting characters (ESC, newline, RTL override) shown as escapes."""
    if value is None or value == "":
        return "-"
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    return "".join(c if unicodedata.category(c) not in ("Cc", "Cf") else
                   c.encode("unicode_escape").decode() for c in text)  # fmt: skip


def cmd_list(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from anomalyops.serving.predictions.review import Filters, one_line

    fields = ("variant", "line", "label", "verdict", "since", "until", "limit")
    try:  # the page's own filters: the same bounds and time format
        filters = Filters(**{name: getattr(args, name) for name in fields})
    except ValidationError as error:
        raise ValueError(one_line(error.errors())) from None
    with existing_log(args.log_db) as log:
        rows = log.recent(**filters.query())
    table = [COLUMNS] + [tuple(_cell(row[c]) for c in COLUMNS) for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    for line in table:
        print("  ".join(t.ljust(w) for t, w in zip(line, widths, strict=True)).rstrip())
    print(f"{len(rows)} prediction(s)", file=sys.stderr)
    return 0


def cmd_mark(args: argparse.Namespace) -> int:
    from anomalyops.serving.predictions.log import UnknownPredictionError

    with existing_log(args.log_db) as log:
        try:
            stored = log.mark(args.id, args.verdict, args.reviewer, args.note)
        except UnknownPredictionError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    print(
        f"prediction {stored['prediction_id']} marked {stored['verdict']}"
        f" by {stored['reviewer']} at {stored['time']}"
    )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from anomalyops.serving.predictions.app import serve

    if args.reference and args.repository:
        raise ValueError("give --reference or --repository, not both")
    serve(args.log_db, args.host, args.port, args.reference, args.repository, args.variant,
          args.user_header, args.root_path, args.log_files)  # fmt: skip
    return 0


def add_review_commands(commands: argparse._SubParsersAction) -> None:
    review = commands.add_parser("review", help="QA verdicts: list, mark, serve the review page")
    actions = review.add_subparsers(dest="review_command", required=True)

    listing = actions.add_parser("list", help="logged predictions, newest first")
    listing.add_argument("--log-db", required=True, help=LOG_DB_HELP)
    listing.add_argument("--variant")
    listing.add_argument("--line")
    listing.add_argument("--label", choices=LABELS, default="anomalous")
    listing.add_argument("--verdict", choices=FILTER_VERDICTS, default="any")
    listing.add_argument("--since", help="ISO-8601 date or time (UTC), e.g. 2026-11-24")
    listing.add_argument("--until", help="ISO-8601 date or time (UTC), exclusive")
    listing.add_argument("--limit", type=int, default=20, help="at most 100")
    listing.set_defaults(func=cmd_list)

    mark = actions.add_parser("mark", help="store a verdict on one logged prediction")
    mark.add_argument("id", type=int, help="prediction id (from `review list` or the page)")
    mark.add_argument("--log-db", required=True, help=LOG_DB_HELP)
    mark.add_argument("--verdict", required=True, choices=("false_alarm", "confirmed_defect"))
    mark.add_argument("--reviewer", required=True, help="who says so")
    mark.add_argument("--note", default="", help="why (kept with the verdict)")
    mark.set_defaults(func=cmd_mark)

    serve = actions.add_parser("serve", help="run the review page beside the transformer")
    serve.add_argument("--log-db", required=True, help=LOG_DB_HELP)
    serve.add_argument("--log-files", default=os.environ.get("ANOMALYOPS_PREDICTION_FILES"),
                       help="where kept images are: a folder or s3://... (default "
                       "$ANOMALYOPS_PREDICTION_FILES, else beside a SQLite log)")  # fmt: skip
    serve.add_argument("--host", default="127.0.0.1", help="0.0.0.0 in a pod, behind the ingress")
    serve.add_argument("--port", type=int, default=8090)
    serve.add_argument("--reference", help="reference.json (or its folder) to draw scores against")
    serve.add_argument("--repository", help="Triton repository: each variant's own reference")
    serve.add_argument("--variant", help="variant the page shows first")
    serve.add_argument(
        "--user-header",
        default="X-Forwarded-User",
        help="header in which the ingress names the signed-in reviewer",
    )
    serve.add_argument(
        "--root-path", default="", help="path prefix the ingress serves the page under"
    )
    serve.set_defaults(func=cmd_serve)
