"""`anomalyops pipeline run training|compile`: the CLI side of pipelines/training.py."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from anomalyops.serving.repository import FLAVOURS

PIPELINE_NAMES = ("training",)


def _arguments(args: argparse.Namespace, data: str, tracking_uri: str, repository: str) -> dict:
    from anomalyops.pipelines.cli import _settings

    settings = _settings(args)
    return {
        "data": str(data),
        "variant": args.variant,
        "tracking_uri": tracking_uri,
        "triton_repository": repository,
        "triton_flavour": args.triton_flavour,
        "deploy_target": args.deploy_target,
        "kserve_json": args.kserve_json,
        "detector": args.detector,
        "settings_json": json.dumps(settings),
        "target_fpr": args.fpr,
        "calibration_fraction": args.calibration_fraction,
        "min_images": args.min_images,
        "require_uniform_size": args.require_uniform_size,
        "triton_url": args.triton_url or "",
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
    from anomalyops.components.storage import is_bucket_uri

    if args.data:
        return args.data if is_bucket_uri(args.data) else str(Path(args.data).resolve())
    if args.host:
        raise ValueError("--data is required with --host (a path or URI the cluster can read)")
    from anomalyops.components.synthetic import make_synthetic_dataset

    root = out / "data" / "synthetic"
    if not (root / "train" / "good").is_dir():
        make_synthetic_dataset(root)
    print(f"data: {root} (synthetic parts, demo only; pass --data for a real folder)")
    return str(root.resolve())


def _task_folder(run_dir: Path, task: str) -> Path:
    return run_dir / f"{task}-component"


def _collect_reports(run_dir: Path, target: Path) -> Path:
    """Copy the reports out of KFP's artifact folders under names a browser opens."""
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_task_folder(run_dir, "validate") / "report", target / "validation.html")
    shutil.copyfile(_task_folder(run_dir, "evaluate") / "report", target / "evaluation.html")
    shutil.copytree(_task_folder(run_dir, "evaluate") / "maps", target / "sample_maps",
                    dirs_exist_ok=True)  # fmt: skip
    return target


def cmd_pipeline_run(args: argparse.Namespace) -> int:
    """Run locally through kfp.local (starting MLflow if needed), or submit to --host."""
    from anomalyops.pipelines import training

    out = Path(args.out).resolve()
    data = _data(args, out)
    if args.host:
        if not args.tracking_uri:
            raise ValueError(
                "--tracking-uri is required with --host: steps on the cluster log there"
            )
        if not args.triton_repository:
            raise ValueError(
                "--triton-repository is required with --host: a bucket URI (s3://, gs://) "
                "or a path the deploy step and the Triton ServingRuntime share"
            )
        arguments = _arguments(args, data, args.tracking_uri, args.triton_repository)
        run_id = training.submit(arguments, args.host, _cluster_settings(args))
        print(f"submitted {args.pipeline} run {run_id} to {args.host}")
        return 0

    from anomalyops.components.registry import LocalServer, RegistryError

    server = None
    tracking_uri = args.tracking_uri
    if not tracking_uri:
        server = LocalServer(out / "mlflow").start()
        tracking_uri = server.uri
        print(f"MLflow UI: {tracking_uri} (local server, store {out / 'mlflow'})")
    repository = Path(args.triton_repository or out / "triton-repository").resolve()
    try:
        arguments = _arguments(args, data, tracking_uri, str(repository))
        result = training.run_local(arguments, out / "kfp")
    except RuntimeError as error:
        run_dir = training.latest_run(out / "kfp")
        report = _task_folder(run_dir, "validate") / "report" if run_dir else None
        print(f"error: pipeline failed: {error}", file=sys.stderr)
        if report and report.is_file():
            shutil.copyfile(report, out / "validation.html")
            print(f"validation report: {out / 'validation.html'}", file=sys.stderr)
        return 2
    except RegistryError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        if server is not None and not args.serve:
            server.stop()
    decision = result.decision
    status = "champion" if decision["promoted"] else "challenger (champion unchanged)"
    print(f"pipeline finished in {result.seconds:.1f} s; step outputs in {result.run_dir}")
    reports = _collect_reports(result.run_dir, out / "reports" / result.run_dir.name)
    print(f"validation report: {reports / 'validation.html'}")
    print(f"evaluation report: {reports / 'evaluation.html'}")
    print(f"sample anomaly maps: {reports / 'sample_maps'}")
    print(f"registered model: {decision['model_uri']} -> {status}: {decision['reason']}")
    print(f"champion of {decision['variant']}: version {decision['champion']}")
    deployment = result.deployment
    if deployment["deployed"]:
        print(
            f"Triton repository: {deployment['repository']} (model {deployment['model']} "
            f"version {deployment['triton_version']}, {deployment['flavour']} flavour): "
            f"{deployment['reason']}"
        )
        if deployment["flavour"] == "python":
            print(f"serve it: anomalyops serve --repository {deployment['repository']}")
    else:
        print(f"Triton repository: {deployment['repository']} not changed: {deployment['reason']}")
    if server is not None:
        store = (out / "mlflow").resolve()
        print(
            "browse the registry later: mlflow server --port 5000 "
            f"--backend-store-uri sqlite:///{store / 'mlflow.db'} "
            f"--artifacts-destination {store / 'artifacts'}"
        )
        if args.serve:
            print(f"MLflow UI at {tracking_uri}; Ctrl-C to stop")
            try:
                server.process.wait()
            except KeyboardInterrupt:
                server.stop()
    return 0


def cmd_pipeline_compile(args: argparse.Namespace) -> int:
    from anomalyops.pipelines import training

    path = training.compile_pipeline(args.output or training.COMPILED, _cluster_settings(args))
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
        "storage_secret (pipelines/cluster_settings.py)",
    )


def add_pipeline_commands(commands: argparse._SubParsersAction) -> None:
    """Register `pipeline run` and `pipeline compile` under the main parser."""
    from anomalyops.pipelines.cli import _add_model_options

    pipeline = commands.add_parser("pipeline", help="run or compile Kubeflow pipelines")
    actions = pipeline.add_subparsers(dest="action", required=True)

    run = actions.add_parser("run", help="run a pipeline locally (kfp.local) or on --host")
    run.add_argument("pipeline", choices=PIPELINE_NAMES)
    run.add_argument(
        "--data",
        help="dataset folder or s3:// / gs:// URI (MVTec AD layout); synthetic when omitted",
    )
    run.add_argument("--variant", required=True, help="product variant = registered model name")
    run.add_argument("--host", help="Kubeflow Pipelines endpoint; local run when omitted")
    run.add_argument("--tracking-uri", help="MLflow server; a local one is started when omitted")
    run.add_argument("--out", default="runs/pipeline", help="local outputs and MLflow store")
    run.add_argument("--min-images", type=int, default=10, help="fewest good images accepted")
    run.add_argument(
        "--require-uniform-size",
        action="store_true",
        help="mixed image resolutions fail validation instead of warning",
    )
    run.add_argument(
        "--triton-repository",
        help="Triton model repository the champion is deployed to (default OUT/triton-repository)",
    )
    run.add_argument(
        "--triton-flavour",
        choices=FLAVOURS,
        default="python",
        help="python (CPU, the bundled local Triton) or onnxruntime (GPU nodes)",
    )
    run.add_argument(
        "--triton-url",
        help="model-control address of a running Triton (printed by `anomalyops serve`): "
        "the new champion is loaded there at once",
    )
    run.add_argument(
        "--deploy-target",
        choices=("repository", "kserve"),
        default="repository",
        help="repository: add the champion to the Triton repository folder; kserve: upload "
        "it under the s3:// or gs:// --triton-repository and roll the line's InferenceService",
    )
    run.add_argument(
        "--kserve-json",
        default="{}",
        help='InferenceService settings for --deploy-target kserve, e.g. \'{"namespace": '
        '"plant-a", "canary_percent": 10}\' (components/kserve_deploy.KServeSettings)',
    )
    run.add_argument("--serve", action="store_true", help="keep the local MLflow UI up after")
    _add_cluster_options(run)
    _add_model_options(run)
    run.set_defaults(func=cmd_pipeline_run)

    compile_ = actions.add_parser("compile", help="write the pipeline as KFP YAML")
    compile_.add_argument("pipeline", choices=PIPELINE_NAMES, nargs="?", default="training")
    compile_.add_argument("--output", help="YAML path (default pipelines/training.yaml)")
    _add_cluster_options(compile_)
    compile_.set_defaults(func=cmd_pipeline_compile)
