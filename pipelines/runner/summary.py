"""What a local pipeline run prints at its end: the outcome, where reports are, why it failed.

Reports are copied out of KFP's artifact folders under names a browser opens.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path


def task_folder(run_dir: Path, task: str) -> Path:
    return run_dir / f"{task}-component"


def collect_reports(run_dir: Path, target: Path, evaluate: str = "evaluate") -> Path:
    """Copy the reports out of KFP's artifact folders under names a browser opens.

    EVALUATE is the task that wrote the evaluation (retraining: `challenge`).
    """
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(task_folder(run_dir, "validate") / "report", target / "validation.html")
    shutil.copyfile(task_folder(run_dir, evaluate) / "report", target / "evaluation.html")
    maps = task_folder(run_dir, evaluate) / "maps"
    if maps.is_dir():  # retraining without eval data draws none
        shutil.copytree(maps, target / "sample_maps", dirs_exist_ok=True)
    return target


def print_failure(error: Exception, run_dir: Path | None, out: Path, step_error: str | None) -> int:
    """Say a local run failed, first in the failing step's own words, and where its
    validation report is when validation stopped it."""
    from anomalyops.pipelines.runner.step_log import ANSI

    message = ANSI.sub("", str(error))
    if step_error:
        message = f"{message}\n{step_error}"
    report = task_folder(run_dir, "validate") / "report" if run_dir else None
    print(f"error: pipeline failed: {message}", file=sys.stderr)
    if run_dir:
        print(f"step outputs: {run_dir}", file=sys.stderr)
    if report and report.is_file():
        shutil.copyfile(report, out / "validation.html")
        print(f"validation report: {out / 'validation.html'}", file=sys.stderr)
    return 2


def print_outcome(result, out: Path, evaluate: str) -> None:
    """Where a training or retraining run put its reports, model and deployment."""
    decision = result.decision
    print(f"pipeline finished in {result.seconds:.1f} s; step outputs in {result.run_dir}")
    reports = collect_reports(result.run_dir, out / "reports" / result.run_dir.name, evaluate)
    print(f"validation report: {reports / 'validation.html'}")
    print(f"evaluation report: {reports / 'evaluation.html'}")
    if (reports / "sample_maps").is_dir():
        print(f"sample anomaly maps: {reports / 'sample_maps'}")
    print_decision(decision)
    print(f"champion of {decision['variant']}: version {decision['champion']}")
    print_deployment(result.deployment)


def print_decision(decision: dict) -> None:
    """The registered version and what the gate made of it."""
    status = "champion" if decision["promoted"] else "challenger (champion unchanged)"
    print(f"registered model: {decision['model_uri']} -> {status}: {decision['reason']}")


def print_deployment(deployment: dict) -> None:
    if deployment["deployed"]:
        print(
            f"Triton repository: {deployment['repository']} (model {deployment['model']} "
            f"version {deployment['triton_version']}, {deployment['flavour']} flavour): "
            f"{deployment['reason']}"
        )
        if deployment["flavour"] == "python" and "loaded by Triton" not in deployment["reason"]:
            print(f"serve it: anomalyops serve --repository {deployment['repository']}")
    else:
        print(f"Triton repository: {deployment['repository']} not changed: {deployment['reason']}")


def print_drift(
    verdict: dict, args: argparse.Namespace, tracking_uri: str, repository: str, root: Path
) -> None:
    """The verdict, where it and the report are kept, and what the retraining changed."""
    from anomalyops.components.registry.champion import champion_version
    from anomalyops.pipelines import drift, training

    print(f"{verdict['variant']}: {verdict['status'].upper()}: {verdict['reason']}")
    print(f"drift verdict: {verdict['verdict_path']}")
    if verdict.get("report_path"):
        print(f"drift report: {verdict['report_path']}")
    out = Path(verdict["verdict_path"]).parents[2]
    print(f"every check: anomalyops drift list --variant {args.variant} --out {out}")
    run_dir = training.latest_run(root, drift.PIPELINE_NAME)
    if not verdict["drift"]:
        print(f"no alert raised: no retraining; step outputs in {run_dir}")
        return
    champion = champion_version(tracking_uri, args.variant)
    print(f"ALERT raised: retraining ran; step outputs in {run_dir}")
    outcome = deploy_output(run_dir)
    if outcome is not None:  # what the gate decided and the deploy step did
        print_decision(outcome["decision"])
    print(f"champion of {args.variant}: version {champion} (registry {tracking_uri})")
    if outcome is not None:
        print_deployment(outcome["deployment"])
    else:
        served = Path(repository) / args.variant / str(champion)
        print(f"Triton repository: {served if served.is_dir() else repository}")


def deploy_output(run_dir: Path | None) -> dict | None:
    """The deploy step's output ({decision, deployment}) in a kfp.local run folder, if any."""
    path = run_dir / "deploy-component" / "executor_output.json" if run_dir else None
    if path is None or not path.is_file():
        return None
    return json.loads(json.loads(path.read_text())["parameterValues"]["Output"])
