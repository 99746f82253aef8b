"""`pipeline run --host` options for where and as whom a run is submitted, and the drift
pipeline's schedule (a KFP recurring run instead of one run)."""

from __future__ import annotations

import argparse


def add_kfp_options(parser: argparse.ArgumentParser, schedule: bool = False) -> None:
    group = parser.add_argument_group("Kubeflow Pipelines (with --host)")
    group.add_argument("--namespace",
                       help="multi-user Kubeflow: the profile namespace the run goes to "
                       "(default: kfp.Client's: kubeflow on a standalone install)")  # fmt: skip
    group.add_argument("--token-file",
                       help="file holding a bearer token for the KFP API (multi-user "
                       "Kubeflow; e.g. a projected service account token); never on the "
                       "command line")  # fmt: skip
    group.add_argument("--service-account",
                       help="Kubernetes service account the run's steps run as (default: the "
                       "namespace's pipeline runner); it needs the chart's deployer Role "
                       "(rbac.deployerSubjects) to deploy")  # fmt: skip
    group.add_argument("--experiment", default="anomalyops", help="KFP experiment name")
    if schedule:
        group.add_argument("--schedule",
                           help="create a recurring run on this KFP cron (6 fields, seconds "
                           "first: '0 17 * * * *' = minute 17 of every hour) instead of one "
                           "run; one at a time, missed intervals not backfilled")  # fmt: skip


def kfp_target(args: argparse.Namespace):  # -> KfpTarget
    from anomalyops.pipelines.runner.kfp_runs import KfpTarget

    return KfpTarget(args.host, args.namespace, args.token_file, args.service_account,
                     args.experiment)  # fmt: skip


def check_kfp_options(args: argparse.Namespace) -> None:
    """KFP options mean nothing on a local run: refuse them rather than ignore them."""
    if args.host:
        if getattr(args, "schedule", None):
            from anomalyops.pipelines.runner.kfp_runs import check_cron

            check_cron(args.schedule)
        return
    given = [f"--{name.replace('_', '-')}" for name in ("namespace", "token_file",
             "service_account", "schedule") if getattr(args, name, None)]  # fmt: skip
    if given:
        raise ValueError(f"{', '.join(given)} need --host (a Kubeflow Pipelines endpoint)")
