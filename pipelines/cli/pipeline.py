"""`anomalyops pipeline run|compile training|retraining|drift`: the CLI side of pipelines/.

Locally every pipeline runs through kfp.local against --tracking-uri or a local MLflow
server on OUT/mlflow (so a retraining or drift run with the same --out finds the
champion a training run registered); with --host it is submitted to Kubeflow Pipelines.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

from anomalyops.pipelines.cli.options import LOG_DB_HELP
from anomalyops.serving.triton.repository import FLAVOURS

PIPELINE_NAMES = ("training", "retraining", "drift")


def _arguments(args: argparse.Namespace, data: str, tracking_uri: str, repository: str) -> dict:
    from anomalyops.pipelines.cli.options import model_settings

    return {
        "data": str(data),
        "variant": args.variant,
        "tracking_uri": tracking_uri,
        "detector": args.detector,
        "settings_json": json.dumps(model_settings(args)),
        "target_fpr": args.fpr,
        "calibration_folds": args.calibration_folds,
        "device": args.device,
        "min_images": args.min_images,
        "require_uniform_size": args.require_uniform_size,
        **_deploy_arguments(args, repository),
    }


def _cluster_settings(args: argparse.Namespace):
    """ClusterSettings from --cluster-settings FILE, with --image and --gpus on top."""
    from anomalyops.pipelines.cluster_settings import ClusterSettings

    settings = (
        ClusterSettings.from_file(args.cluster_settings)
        if args.cluster_settings
        else (ClusterSettings())
    )
    if args.image:
        settings.image = args.image
    if args.gpus is not None:
        settings.gpus = args.gpus
    return settings


def _data(args: argparse.Namespace, out: Path) -> str:
    from anomalyops.serving.storage import is_bucket_uri

    if args.data:
        return args.data if is_bucket_uri(args.data) else str(Path(args.data).resolve())
    if args.host:
        raise ValueError("--data is required with --host (a path or URI the cluster can read)")
    from anomalyops.components.data.synthetic import make_synthetic_dataset

    root = out / "data" / "synthetic"
    if not (root / "train" / "good").is_dir():
        make_synthetic_dataset(root)
    print(f"data: {root} (synthetic parts, demo only; pass --data for a real folder)")
    return str(root.resolve())


def _local(value: str) -> str:
    """A path made absolute (kfp.local steps run elsewhere); URIs, env:NAME and '' as given."""
    from anomalyops.serving.predictions.database import ENV_PREFIX
    from anomalyops.serving.storage import is_bucket_uri

    if not value or is_bucket_uri(value) or "://" in value or value.startswith(ENV_PREFIX):
        return value
    return str(Path(value).resolve())


def _deploy_arguments(args: argparse.Namespace, repository: str) -> dict:
    return {
        "triton_repository": repository,
        "triton_flavour": args.triton_flavour,
        "deploy_target": args.deploy_target,
        "kserve_json": args.kserve_json,
        "triton_url": args.triton_url or "",
    }


def _retraining_arguments(args: argparse.Namespace, tracking_uri: str, repository: str) -> dict:
    """What retraining and drift share (each adds its own prediction log option)."""
    return {
        "new_good": _local(args.new_good),
        "variant": args.variant,
        "tracking_uri": tracking_uri,
        "eval_data": _local(args.eval_data or ""),
        "target_fpr": args.fpr,
        "views": args.views,
        "device": args.device,
        **_deploy_arguments(args, repository),
    }


def _drift_out(args: argparse.Namespace, out: Path) -> str:
    """Where drift keeps its state: --drift-out, else OUT/drift, on a cluster the PVC's mount."""
    if args.drift_out or not args.host:
        return _local(args.drift_out or str(out / "drift"))
    from anomalyops.pipelines.cluster_settings import DRIFT_STATE_MOUNT

    if not _cluster_settings(args).drift_state_pvc:
        raise ValueError("--host: the drift step keeps its alert state between runs; set "
                         "drift_state_pvc in --cluster-settings (a PVC in the pipeline "
                         f"namespace, mounted at {DRIFT_STATE_MOUNT}) or give --drift-out "
                         "a path the step's pod mounts")  # fmt: skip
    return DRIFT_STATE_MOUNT


def _drift_arguments(
    args: argparse.Namespace, out: Path, tracking_uri: str, repository: str
) -> dict:
    from anomalyops.pipelines.cli.drift import drift_settings

    return _retraining_arguments(args, tracking_uri, repository) | {
        "prediction_log": _local(args.log_db),
        "drift_out": _drift_out(args, out),
        "drift_settings_json": json.dumps(drift_settings(args)),
    }


def _pipeline_arguments(
    args: argparse.Namespace, out: Path, tracking_uri: str, repository: str
) -> dict:
    """The arguments of the pipeline ARGS name, from its command-line options."""
    if args.pipeline == "training":
        return _arguments(args, _data(args, out), tracking_uri, repository)
    if args.pipeline == "retraining":
        settings = {"backbone": args.backbone, "input_size": [args.size, args.size]}
        arguments = _retraining_arguments(args, tracking_uri, repository)
        return arguments | {
            "prediction_log": _local(args.prediction_log or ""),
            "settings_json": json.dumps(settings),
        }
    return _drift_arguments(args, out, tracking_uri, repository)


def _submit(args: argparse.Namespace, module, arguments: dict) -> int:
    from anomalyops.pipelines.cli.kfp_options import kfp_target
    from anomalyops.pipelines.runner import kfp_runs

    target = kfp_target(args)
    where = f"{args.host}" + (f" (namespace {target.namespace})" if target.namespace else "")
    if getattr(args, "schedule", None):
        name = f"anomalyops-{args.pipeline}-{args.variant}"
        job = kfp_runs.schedule(module.build_pipeline, arguments, target, args.schedule, name,
                                _cluster_settings(args))  # fmt: skip
        print(f"scheduled {args.pipeline} recurring run {job} ({name}, cron "
              f"'{args.schedule}') on {where}")  # fmt: skip
        return 0
    run_id = kfp_runs.submit(module.build_pipeline, arguments, target, _cluster_settings(args))
    print(f"submitted {args.pipeline} run {run_id} to {where}")
    return 0


def _refuse_password_parameter(option: str, location: str) -> None:
    """A log URL with a password would be a run parameter that anyone who lists runs reads."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from anomalyops.pipelines.cluster_settings import PREDICTION_LOG_ENV

    try:
        password = "://" in location and make_url(location).password
    except (ArgumentError, ValueError):
        password = False  # not a URL: the step names the problem
    if password:
        flag = "--" + option.replace("_", "-")
        raise ValueError(f"{flag}: a database URL with a password would be stored in the run's "
                         "parameters, readable by anyone who may list runs; put it in the "
                         f"steps' Secret (anomalyops-storage, key {PREDICTION_LOG_ENV}) and "
                         f"pass {flag} env:{PREDICTION_LOG_ENV}")  # fmt: skip


def _require_cluster_places(args: argparse.Namespace) -> None:
    if not args.tracking_uri:
        raise ValueError("--tracking-uri is required with --host: steps on the cluster log there")
    if not args.triton_repository:
        raise ValueError(
            "--triton-repository is required with --host: a bucket URI (s3://, gs://) "
            "or a path the deploy step and the Triton ServingRuntime share"
        )
    for option in ("log_db", "prediction_log"):
        _refuse_password_parameter(option, getattr(args, option, None) or "")
    if getattr(args, "deploy_target", "kserve") == "repository":
        # The deploy step runs in a pod: a repository folder there is served by no Triton,
        # and the run would report a deploy that nothing serves.
        raise ValueError("--host needs --deploy-target kserve: with the default repository "
                         "target the deploy step writes into its own pod")  # fmt: skip


def cmd_pipeline_run(args: argparse.Namespace) -> int:
    """Run locally through kfp.local (starting MLflow if needed), or submit to --host."""
    from anomalyops.components.registry.client import RegistryError
    from anomalyops.pipelines import drift, retraining, training
    from anomalyops.pipelines.cli.kfp_options import check_kfp_options

    out = Path(args.out).resolve()
    check_kfp_options(args)
    if args.host:
        _require_cluster_places(args)
    if args.pipeline == "drift" and not args.host:
        from anomalyops.pipelines.cli.options import existing_log

        existing_log(args.log_db).close()  # a mistyped log is named before MLflow starts
    module = {"training": training, "retraining": retraining, "drift": drift}[args.pipeline]
    if args.host:
        arguments = _pipeline_arguments(args, out, args.tracking_uri, args.triton_repository)
        return _submit(args, module, arguments)
    from anomalyops.components.registry.register import unlock
    from anomalyops.pipelines.runner.process_group import stop_children_on_termination
    from anomalyops.pipelines.runner.step_log import StepLog
    from anomalyops.pipelines.runner.summary import print_drift, print_failure, print_outcome
    from anomalyops.pipelines.runner.tracking import tracking_server

    repository = str(Path(args.triton_repository or out / "triton-repository").resolve())
    pipeline_root = out / "kfp"
    # The full kfp.local output goes to a file; the console gets a line per step
    # (--verbose: everything, as before).
    stamp = time.strftime("%Y%m%d-%H%M%S")
    log_path = (
        None if getattr(args, "verbose", False) else out / "logs" / f"{args.pipeline}-{stamp}.log"
    )
    step_log = StepLog(sys.stdout, log_path)
    if log_path:
        print(f"{args.pipeline} pipeline: full step logs in {log_path}")
    with (
        stop_children_on_termination(),
        tracking_server(args.tracking_uri, out, getattr(args, "serve", False)) as tracking_uri,
    ):
        if args.force_unlock:
            locks, versions = unlock(tracking_uri, args.variant)
            print(f"force-unlock {args.variant}: removed locks {locks or 'none'}, "
                  f"rolled back versions {versions or 'none'}")  # fmt: skip
        arguments = _pipeline_arguments(args, out, tracking_uri, repository)
        try:
            with contextlib.redirect_stdout(step_log):
                if args.pipeline == "drift":
                    verdict = drift.run_local(arguments, pipeline_root)
                else:
                    result = module.run_local(arguments, pipeline_root)
        except RuntimeError as error:
            run_dir = training.latest_run(pipeline_root, module.PIPELINE_NAME)
            return print_failure(error, run_dir, out, step_log.step_error())
        except RegistryError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        finally:
            step_log.close()
        if args.pipeline == "drift":
            print_drift(verdict, args, tracking_uri, repository, pipeline_root)
        else:
            print_outcome(result, out, "evaluate" if args.pipeline == "training" else "challenge")
    return 0


def cmd_pipeline_compile(args: argparse.Namespace) -> int:
    from anomalyops.pipelines import drift, retraining, training

    module = {"training": training, "retraining": retraining, "drift": drift}[args.pipeline]
    path = module.compile_pipeline(args.output or module.COMPILED, _cluster_settings(args))
    print(f"compiled {args.pipeline} pipeline to {path}")
    return 0


def _add_cluster_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--image",
        help="step image, name:tag or name@sha256:digest (default $ANOMALYOPS_IMAGE or the "
        "release tag)",
    )
    parser.add_argument("--gpus", type=int, help="GPUs for train and evaluate (default 0)")
    parser.add_argument(
        "--cluster-settings",
        help="YAML: image, per-step resources, gpus, node_selector, tolerations, "
        "storage_secret, image_pull_secrets (pipelines/cluster_settings.py)",
    )


def _add_common_run_options(parser: argparse.ArgumentParser) -> None:
    """Registry, deploy and cluster options every pipeline run takes."""
    from anomalyops.pipelines.cli.kfp_options import add_kfp_options
    from anomalyops.pipelines.cli.options import variant_name

    parser.add_argument(
        "--variant",
        required=True,
        type=variant_name,
        help="product variant = registered model name (lowercase, digits, '-')",
    )
    parser.add_argument("--host", help="Kubeflow Pipelines endpoint; local run when omitted")
    parser.add_argument(
        "--tracking-uri", help="MLflow server; a local one on OUT/mlflow is started when omitted"
    )
    parser.add_argument("--out", default="runs/pipeline", help="local outputs and MLflow store")
    parser.add_argument(
        "--triton-repository",
        help="Triton model repository the champion is deployed to (default OUT/triton-repository)",
    )
    parser.add_argument(
        "--triton-flavour",
        choices=FLAVOURS,
        default="python",
        help="python (CPU, the bundled local Triton) or onnxruntime (GPU nodes)",
    )
    parser.add_argument(
        "--triton-url",
        help="model-control address of a running Triton (printed by `anomalyops serve`): "
        "the new champion is loaded there at once",
    )
    parser.add_argument(
        "--deploy-target",
        choices=("repository", "kserve"),
        default="repository",
        help="repository: add the champion to the Triton repository folder; kserve: upload "
        "it under the s3:// or gs:// --triton-repository and roll the line's InferenceService",
    )
    parser.add_argument(
        "--kserve-json",
        default="{}",
        help='the line for --deploy-target kserve, e.g. \'{"name": "weld-line1", "namespace": '
        '"plant-a", "canary_percent": 10}\' (components/deploy/kserve.py: KServeSettings)',
    )
    parser.add_argument(
        "--force-unlock",
        action="store_true",
        help="first remove the variant's registry lock and roll back half-registered "
        "versions (only when the run holding it is known to be dead)",
    )
    _add_cluster_options(parser)
    add_kfp_options(parser, schedule=parser.prog.endswith(" drift"))


def _add_retraining_options(parser: argparse.ArgumentParser, new_good_help: str) -> None:
    from anomalyops.pipelines.cli.options import add_device_option

    parser.add_argument("--new-good", required=True, help=new_good_help)
    parser.add_argument(
        "--eval-data",
        help="MVTec-layout folder or URI whose test split the challenger and champion are "
        "both scored on (default: the new good images and confirmed defects only)",
    )
    parser.add_argument("--views", type=int, default=8, help="augmented views per new image")
    parser.add_argument("--fpr", type=float, default=0.01, help="target false-positive rate")
    add_device_option(parser)


def add_pipeline_commands(commands: argparse._SubParsersAction) -> None:
    """Register `pipeline run training|retraining|drift` and `pipeline compile`."""
    from anomalyops.pipelines.cli.drift import add_settings_options
    from anomalyops.pipelines.cli.options import BACKBONE_NAMES, add_model_options

    pipeline = commands.add_parser("pipeline", help="run or compile Kubeflow pipelines")
    actions = pipeline.add_subparsers(dest="action", required=True)

    run_parser = actions.add_parser("run", help="run a pipeline locally (kfp.local) or on --host")
    runs = run_parser.add_subparsers(dest="pipeline", required=True)

    run = runs.add_parser("training", help="validate, train, evaluate, register, deploy")
    run.add_argument(
        "--data",
        help="dataset folder or s3:// / gs:// URI (MVTec AD layout); synthetic when omitted",
    )
    run.add_argument("--min-images", type=int, default=10, help="fewest good images accepted")
    run.add_argument(
        "--require-uniform-size",
        action="store_true",
        help="mixed image resolutions fail validation instead of warning",
    )
    run.add_argument("--serve", action="store_true", help="keep the local MLflow UI up after")
    _add_common_run_options(run)
    add_model_options(run)
    run.set_defaults(func=cmd_pipeline_run)

    retrain = runs.add_parser(
        "retraining",
        help="few-shot: extend the champion with k new good images and the reviewed "
        "predictions, challenge, register, deploy",
    )
    retrain.add_argument(
        "--prediction-log", help="prediction log whose reviewed predictions join the run"
    )
    _add_retraining_options(retrain, "k (1 to 16) good images of the new state: a folder "
                                     "(flat or MVTec layout) or bucket URI")  # fmt: skip
    retrain.add_argument(
        "--backbone",
        choices=BACKBONE_NAMES,
        default="efficientnet_lite0",
        help="a new variant's backbone (a champion keeps its own)",
    )
    retrain.add_argument("--size", type=int, default=256, help="a new variant's input size")
    _add_common_run_options(retrain)
    retrain.set_defaults(func=cmd_pipeline_run)

    drift = runs.add_parser(
        "drift", help="check the champion's predictions for drift; retrain when an alert rises"
    )
    drift.add_argument("--log-db", required=True, help=LOG_DB_HELP)
    drift.add_argument(
        "--drift-out",
        help="verdicts, reports and alert state, shared by runs (default "
        "OUT/drift; with --host the mount of cluster setting drift_state_pvc)",
    )
    add_settings_options(drift)
    _add_retraining_options(drift, "recent good images of the line's current state, used "
                                   "when an alert starts retraining")  # fmt: skip
    _add_common_run_options(drift)
    drift.set_defaults(func=cmd_pipeline_run)

    compile_ = actions.add_parser("compile", help="write a pipeline as KFP YAML")
    compile_.add_argument("pipeline", choices=PIPELINE_NAMES, nargs="?", default="training")
    compile_.add_argument("--output", help="YAML path (default pipelines/<pipeline>.yaml)")
    _add_cluster_options(compile_)
    compile_.set_defaults(func=cmd_pipeline_compile)
