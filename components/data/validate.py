"""The validate step: check good images before training, with a Great Expectations suite.

A detector trained on good images learns whatever those images contain: a corrupt file,
a duplicate, a dark or blurred shot taught as "normal" raises false alarms later. So each
image gets a manifest row (hashes, format, size, brightness, contrast, sharpness) and an
expectation suite checks the manifest. Hard failures stop the pipeline with the offending
files; soft findings are warnings in the JSON and HTML reports.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from anomalyops.components.data.datasets import IMAGE_SUFFIXES, FolderDataset
from anomalyops.components.data.manifest import (
    FAR_AREA_RATIO,
    FAR_Z,
    MIN_CONTRAST,
    MIN_FOR_OUTLIERS,
    MIN_SIDE,
    build_manifest,
)

log = logging.getLogger(__name__)

Severity = Literal["hard", "soft"]
MANIFEST_COLUMNS = [
    "path",
    "format",
    "size",
    "channels",
    "bit_depth",
    "brightness",
    "contrast",
    "sharpness",
    "brightness_z",
    "contrast_z",
    "sharpness_z",
    "decode_ok",
    "error",
]
REPORT_JSON = "validation.json"
REPORT_HTML = "validation.html"


class ValidationError(ValueError):
    """Hard validation failures; the message lists every check and offending file."""

    def __init__(self, message: str, report: ValidationReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class Finding:
    check: str
    severity: Severity
    description: str
    files: list[str] = field(default_factory=list)
    observed: Any = None


@dataclass
class ValidationReport:
    root: str
    images: int
    passed: bool
    dataset_sha256: str
    hard_failures: list[Finding]
    warnings: list[Finding]
    settings: dict
    manifest: list[dict]

    def to_dict(self) -> dict:
        return asdict(self)


def _suite(frame, min_images: int, require_uniform_size: bool, z_limit: float,
           far_z: float = FAR_Z) -> list:  # fmt: skip
    """(expectation, check name, severity, description) for this manifest."""
    import great_expectations as gx

    def modal(column: str):
        values = frame.loc[frame["decode_ok"], column]
        return values.mode().iloc[0] if len(values) else None

    E = gx.expectations
    size_severity: Severity = "hard" if require_uniform_size else "soft"
    checks = [
        (
            E.ExpectTableRowCountToBeBetween(min_value=min_images),
            "min_images",
            "hard",
            f"at least {min_images} good images",
        ),
        (
            E.ExpectColumnValuesToBeInSet(column="decode_ok", value_set=[True]),
            "decodes",
            "hard",
            "every file decodes",
        ),
        (
            E.ExpectColumnValuesToBeUnique(column="sha256"),
            "exact_duplicates",
            "soft",
            "no two files have identical bytes",
        ),
        (
            E.ExpectColumnValuesToBeNull(column="near_duplicate_of"),
            "near_duplicates",
            "soft",
            "no two images are near-identical (dHash)",
        ),
    ]
    for column, what in (
        ("format", "one file format"),
        ("channels", "one channel count"),
        ("bit_depth", "one bit depth"),
    ):
        checks.append(
            (
                E.ExpectColumnValuesToBeInSet(column=column, value_set=[modal(column)]),
                f"uniform_{column}",
                "soft",
                f"{what} (majority: {modal(column)})",
            )
        )
    checks.append(
        (
            E.ExpectColumnValuesToBeInSet(column="size", value_set=[modal("size")]),
            "uniform_size",
            size_severity,
            f"one resolution (majority: {modal('size')})",
        )
    )
    limit = np.log10(FAR_AREA_RATIO)
    checks += [
        (E.ExpectColumnValuesToBeBetween(column="min_side", min_value=MIN_SIDE), "min_size",
         "hard", f"every side at least {MIN_SIDE} px"),
        (E.ExpectColumnValuesToBeBetween(column="contrast", min_value=MIN_CONTRAST), "blank",
         "hard", f"not blank (grey-level std at least {MIN_CONTRAST})"),
    ]  # fmt: skip
    far = int(frame["decode_ok"].sum()) >= MIN_FOR_OUTLIERS
    if far:
        within = f"pixel count within {FAR_AREA_RATIO:.0f}x of the set's median"
        checks.append((E.ExpectColumnValuesToBeBetween(column="area_log_ratio", min_value=-limit,
                                                       max_value=limit), "size_far_outliers",
                       "hard", within))  # fmt: skip
    for column, what in (
        ("brightness", "lighting"),
        ("contrast", "contrast"),
        ("sharpness", "focus (Laplacian variance)"),
    ):
        checks.append((E.ExpectColumnValuesToBeBetween(column=f"{column}_z", min_value=-z_limit,
                                                       max_value=z_limit),
                       f"{column}_outliers", "soft",
                       f"{what} within {z_limit} robust z-scores of the median"))  # fmt: skip
        if not far:
            continue
        checks.append((E.ExpectColumnValuesToBeBetween(column=f"{column}_z", min_value=-far_z,
                                                       max_value=far_z),
                       f"{column}_far_outliers", "hard",
                       f"{what} within {far_z} robust z-scores: far beyond is no part "
                       "photograph"))  # fmt: skip
    return checks


def _run_suite(frame, checks: list) -> list[tuple[str, Severity, str, bool, list[str], Any]]:
    """Run the checks as one GX suite on an ephemeral context; one tuple per check."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    context = gx.get_context(mode="ephemeral")
    # progress-bar switches moved between GX releases; cosmetic only
    with contextlib.suppress(Exception):
        context.variables.progress_bars = {"globally": False, "metric_calculations": False}
    asset = context.data_sources.add_pandas("manifest").add_dataframe_asset("images")
    batch = asset.add_batch_definition_whole_dataframe("all").get_batch(
        batch_parameters={"dataframe": frame}
    )
    suite = gx.ExpectationSuite(name="good_images")
    for expectation, name, *_ in checks:
        expectation.meta = {"check": name}
        suite.add_expectation(expectation)
    result = batch.validate(
        suite,
        result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ["path"]},
    )
    by_name = {r.expectation_config.meta["check"]: r for r in result.results}
    rows = []
    for _, name, severity, description in checks:
        outcome = by_name[name]
        if outcome.exception_info and outcome.exception_info.get("raised_exception"):
            raise RuntimeError(f"expectation {name} could not run: {outcome.exception_info}")
        files = sorted({row["path"] for row in outcome.result.get("unexpected_index_list") or []})
        rows.append(
            (
                name,
                severity,
                description,
                outcome.success,
                files,
                outcome.result.get("observed_value"),
            )
        )
    return rows


def validate(
    data: str | Path,
    output: str | Path | None = None,
    min_images: int = 10,
    require_uniform_size: bool = False,
    near_duplicate_bits: int = 4,
    z_limit: float = 3.5,
    raise_on_failure: bool = True,
    far_z: float = FAR_Z,
) -> ValidationReport:
    """Validate DATA/train/good; write reports to OUTPUT; raise ValidationError on hard failures.

    `require_uniform_size` makes mixed resolutions a hard failure, for detectors that
    need one input resolution; ours resize, so by default it is a warning. Images far
    outside the set (a side under MIN_SIDE, 100x the median pixel count, lighting,
    contrast or focus beyond `far_z` robust z-scores) are hard failures.
    """
    dataset = FolderDataset(data)
    paths = sorted(
        p for p in (dataset.root / "train" / "good").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
    )
    frame = build_manifest(paths, near_duplicate_bits, z_limit)
    checks = _suite(frame, min_images, require_uniform_size, z_limit, far_z)
    hard, soft = [], []
    for name, severity, description, success, files, observed in _run_suite(frame, checks):
        if success:
            continue
        finding = Finding(name, severity, description, files, observed)
        (hard if severity == "hard" else soft).append(finding)
    report = ValidationReport(
        root=str(dataset.root),
        images=len(frame),
        passed=not hard,
        dataset_sha256=dataset.content_hash(),
        hard_failures=hard,
        warnings=soft,
        settings={
            "min_images": min_images,
            "require_uniform_size": require_uniform_size,
            "near_duplicate_bits": near_duplicate_bits,
            "z_limit": z_limit,
            "far_z": far_z,
            "min_side": MIN_SIDE,
        },
        manifest=json.loads(frame.to_json(orient="records")),
    )
    if output is not None:
        write_reports(report, output)
    for finding in soft:
        log.warning("validation warning %s: %s", finding.check, ", ".join(finding.files) or "")
    if hard and raise_on_failure:
        raise ValidationError(failure_message(report), report)
    return report


def failure_message(report: ValidationReport) -> str:
    lines = [f"{report.root}: {len(report.hard_failures)} hard validation failure(s)"]
    for f in report.hard_failures:
        detail = ", ".join(f.files) if f.files else f"observed {f.observed}"
        lines.append(f"  {f.check} ({f.description}): {detail}")
    return "\n".join(lines)


def write_reports(report: ValidationReport, output: str | Path) -> tuple[Path, Path]:
    """validation.json (everything) and validation.html (findings, then the manifest)."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    json_path, html_path = output / REPORT_JSON, output / REPORT_HTML
    json_path.write_text(json.dumps(report.to_dict(), indent=2, default=str))
    html_path.write_text(render_html(report))
    return json_path, html_path


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def render_html(report: ValidationReport) -> str:
    """The report people open: hard failures, warnings, then the manifest with flagged rows."""
    from anomalyops.components.reports.report import TEMPLATES

    flagged = {p for f in report.hard_failures + report.warnings for p in f.files}
    rows = [
        {"css": "flag" if row["path"] in flagged else "",
         "cells": [_cell(row.get(c)) for c in MANIFEST_COLUMNS]}
        for row in report.manifest
    ]  # fmt: skip
    sections = [("Hard failures (stop the pipeline)", report.hard_failures, "hard"),
                ("Warnings", report.warnings, "soft")]  # fmt: skip
    return TEMPLATES.get_template("validation.html").render(
        report=report, settings=json.dumps(report.settings), sections=sections,
        columns=MANIFEST_COLUMNS, rows=rows,
    )  # fmt: skip
