"""CLI commands `serve`, `rollback`, `infer` and `export`; registered in cli.py."""

from __future__ import annotations

import argparse
import sys


def cmd_serve(args: argparse.Namespace) -> int:
    from anomalyops.serving.triton.front import Limits
    from anomalyops.serving.triton.server import PortInUseError, TritonUnavailableError, serve

    limits = Limits(max_body=int(args.max_body_mb * (1 << 20)), max_depth=args.max_depth)
    try:
        return serve(args.repository, args.port, args.triton_port, limits, args.metrics_port)
    except (PortInUseError, TritonUnavailableError, RuntimeError, TimeoutError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def cmd_rollback(args: argparse.Namespace) -> int:
    from anomalyops.components.deploy.rollback import RollbackError, rollback
    from anomalyops.components.registry.client import RegistryError

    try:
        done = rollback(args.tracking_uri, args.variant, args.repository, args.to, args.triton_url)
    except (RollbackError, RegistryError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    where = "served from the next start"
    if done.loaded_by:
        where = f"loaded by Triton at {done.loaded_by}"
    print(f"{done.variant}: champion v{done.previous} -> v{done.champion}; Triton version "
          f"{done.champion} {where} (repository {done.repository})")  # fmt: skip
    return 0


def cmd_infer(args: argparse.Namespace) -> int:
    from anomalyops.serving.triton.client import InferenceError, TritonClient
    from anomalyops.serving.triton.served_versions import ServedVersions

    versions = None
    if args.repository:
        versions = ServedVersions(args.repository, args.model)
    else:
        print("note: no --repository: thresholds from Triton's config, unusable frames "
              "(dark, blown out, blurred) are not flagged", file=sys.stderr)  # fmt: skip
    try:
        with TritonClient(
            args.url, args.model, args.timeout, args.retries, args.batch_size
        ) as client:
            results = client.score_files(args.images, args.threshold, versions)
    except InferenceError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for result in results:
        if result.error:
            print(f"error: {result.error}", file=sys.stderr)
            continue
        version = f"\tv{result.version}" if versions else ""
        print(f"{result.name}\t{result.score:.4f}\t{result.label or '-'}{version}")
        if result.problems:
            print(f"unusable: {result.name}: {'; '.join(result.problems)}", file=sys.stderr)
    return 1 if any(r.error for r in results) else 0


def cmd_export(args: argparse.Namespace) -> int:
    from anomalyops.components.deploy.export import export
    from anomalyops.serving.triton.repository import add_model

    if args.repository and not args.name:
        raise ValueError("--repository needs --name: the product variant the model serves")
    contract = export(args.model, args.out, force=args.force, threads=args.instance_threads)
    print(f"exported {contract.kind} to {args.out} (onnx sha256 {contract.onnx['sha256'][:12]})")
    if args.repository:
        version = add_model(args.repository, args.name, args.out, args.flavour)
        print(f"added to Triton repository as {args.name} version {version.name}")
    return 0


def add_serve(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser("serve", help="run the bundled Triton on a model repository")
    serve.add_argument(
        "--repository", required=True, help="Triton model repository (python flavour)"
    )
    serve.add_argument(
        "--port", type=int, help="plants' HTTP port on 127.0.0.1, the front (default: a free one)"
    )
    serve.add_argument(
        "--triton-port",
        type=int,
        help="Triton's own HTTP port: model control for deploy/rollback (default: a free one)",
    )
    serve.add_argument(
        "--metrics-port",
        type=int,
        help="the front's Prometheus /metrics on 127.0.0.1 (default: off)",
    )
    serve.add_argument("--max-body-mb", type=float, default=256, help="largest request body")
    serve.add_argument("--max-depth", type=int, default=32, help="deepest JSON nesting")
    serve.set_defaults(func=cmd_serve)


def add_rollback(commands: argparse._SubParsersAction) -> None:
    rollback = commands.add_parser(
        "rollback", help="move `champion` back to an earlier version and serve it"
    )
    rollback.add_argument("--variant", required=True, help="product variant = registered model")
    rollback.add_argument(
        "--to", type=int, help="version to serve (default: the previous champion)"
    )
    rollback.add_argument("--tracking-uri", required=True, help="MLflow server")
    rollback.add_argument("--repository", required=True, help="Triton model repository")
    rollback.add_argument(
        "--triton-url", default="", help="model-control address of the running Triton"
    )
    rollback.set_defaults(func=cmd_rollback)


def add_infer(commands: argparse._SubParsersAction) -> None:
    from anomalyops.pipelines.cli.options import threshold_value

    infer = commands.add_parser("infer", help="score images on a Triton server")
    infer.add_argument("--url", required=True, help="Triton HTTP address, e.g. 127.0.0.1:8000")
    infer.add_argument("--model", required=True, help="Triton model (product variant)")
    infer.add_argument("--threshold", type=threshold_value,
                       help="override the calibrated threshold")  # fmt: skip
    infer.add_argument(
        "--repository",
        help="the Triton model repository (or a copy): label with the thresholds of the "
        "version that answered and flag unusable frames from its reference.json",
    )
    infer.add_argument("--batch-size", type=int, default=8)
    infer.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    infer.add_argument("--retries", type=int, default=3, help="retries on connection errors")
    infer.add_argument("images", nargs="+")
    infer.set_defaults(func=cmd_infer)


def add_export(commands: argparse._SubParsersAction) -> None:
    from anomalyops.pipelines.cli.options import positive_int, variant_name

    export = commands.add_parser("export", help="export a trained model to ONNX + model.json")
    export.add_argument("--model", required=True, help="directory written by `anomalyops fit`")
    export.add_argument("--out", required=True)
    export.add_argument("--force", action="store_true",
                        help="replace an export in --out (never a trained model)")  # fmt: skip
    export.add_argument("--repository", help="also add it to this Triton repository")
    export.add_argument(
        "--name",
        type=variant_name,
        help="Triton model name (product variant); with --repository",
    )
    export.add_argument("--flavour", choices=["python", "onnxruntime"], default="python")
    export.add_argument("--instance-threads", type=positive_int,
                        help="pin each Triton instance's CPU threads in model.json (default: "
                        "the CPUs the server is given, divided by its instances)")  # fmt: skip
    export.set_defaults(func=cmd_export)
