"""The tracking server a local run uses: the one given, or a local MLflow for the run's length."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def tracking_server(tracking_uri: str, out: Path, serve: bool = False) -> Iterator[str]:
    """--tracking-uri, or a local MLflow server on OUT/mlflow for the run's length."""
    from anomalyops.components.registry.server import LocalServer

    if tracking_uri:
        yield tracking_uri
        return
    server = LocalServer(out / "mlflow").start()
    print(f"MLflow UI: {server.uri} (local server, store {out / 'mlflow'})")
    try:
        yield server.uri
        store = (out / "mlflow").resolve()
        print(
            "browse the registry later: mlflow server --port 5000 "
            f"--backend-store-uri sqlite:///{store / 'mlflow.db'} "
            f"--artifacts-destination {store / 'artifacts'}"
        )
        if serve:
            print(f"MLflow UI at {server.uri}; Ctrl-C to stop")
            with contextlib.suppress(KeyboardInterrupt):
                server.process.wait()
    finally:
        server.stop()
