"""CLI commands `serve`, `infer` and `export`; registered in cli.py."""

from __future__ import annotations

import argparse
import sys


def cmd_serve(args: argparse.Namespace) -> int:
    from anomalyops.serving.triton import serve

    return serve(args.repository, args.port)


def cmd_infer(args: argparse.Namespace) -> int:
    from anomalyops.serving.client import InferenceError, TritonClient

    try:
        with TritonClient(
            args.url, args.model, args.timeout, args.retries, args.batch_size
        ) as client:
            results = client.score_files(args.images, args.threshold)
    except InferenceError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for result in results:
        if result.error:
            print(f"error: {result.error}", file=sys.stderr)
        else:
            print(f"{result.name}\t{result.score:.4f}\t{result.label or '-'}")
    return 1 if any(r.error for r in results) else 0


def cmd_export(args: argparse.Namespace) -> int:
    from anomalyops.components.export import export
    from anomalyops.serving.repository import add_model

    if args.repository and not args.name:
        raise ValueError("--repository needs --name: the product variant the model serves")
    contract = export(args.model, args.out)
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
    serve.add_argument("--port", type=int, help="HTTP port on 127.0.0.1 (default: a free one)")
    serve.set_defaults(func=cmd_serve)


def add_infer(commands: argparse._SubParsersAction) -> None:
    infer = commands.add_parser("infer", help="score images on a Triton server")
    infer.add_argument("--url", required=True, help="Triton HTTP address, e.g. 127.0.0.1:8000")
    infer.add_argument("--model", required=True, help="Triton model (product variant)")
    infer.add_argument("--threshold", type=float, help="override the calibrated threshold")
    infer.add_argument("--batch-size", type=int, default=8)
    infer.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    infer.add_argument("--retries", type=int, default=3, help="retries on connection errors")
    infer.add_argument("images", nargs="+")
    infer.set_defaults(func=cmd_infer)


def add_export(commands: argparse._SubParsersAction) -> None:
    from anomalyops.pipelines.cli import variant_name

    export = commands.add_parser("export", help="export a trained model to ONNX + model.json")
    export.add_argument("--model", required=True, help="directory written by `anomalyops fit`")
    export.add_argument("--out", required=True)
    export.add_argument("--repository", help="also add it to this Triton repository")
    export.add_argument(
        "--name",
        type=variant_name,
        help="Triton model name (product variant); with --repository",
    )
    export.add_argument("--flavour", choices=["python", "onnxruntime"], default="python")
    export.set_defaults(func=cmd_export)
