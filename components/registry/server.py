"""A local MLflow tracking server: what one machine runs instead of the cluster's."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from anomalyops.components.registry.client import RegistryError
from anomalyops.serving.ports import free_port


def mlflow_executable() -> str:
    """The `mlflow` of this interpreter's environment, else the one on PATH."""
    mlflow = Path(sys.executable).with_name("mlflow")
    return str(mlflow) if mlflow.exists() else "mlflow"


class LocalServer:
    """`mlflow server` on 127.0.0.1 with a SQLite store and a local artifact folder.

    ARTIFACTS puts the artifacts in a bucket instead (`s3://bucket/prefix`, as on a
    cluster); the server reaches it with boto3's usual variables (MLFLOW_S3_ENDPOINT_URL
    for MinIO or a local S3 server).
    """

    def __init__(self, root: str | Path, port: int | None = None, artifacts: str = "") -> None:
        self.root = Path(root)
        self.port = port or free_port()
        self.artifacts = artifacts or str((self.root / "artifacts").resolve())
        self.process: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0) -> LocalServer:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "artifacts").mkdir(exist_ok=True)
        command = [mlflow_executable(), "server",
                   "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
                   "--backend-store-uri", f"sqlite:///{(self.root / 'mlflow.db').resolve()}",
                   "--artifacts-destination", self.artifacts]  # fmt: skip
        env = os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        log_file = open(self.root / "server.log", "ab")  # noqa: SIM115 - lives with the process
        self.process = subprocess.Popen(
            command, stdout=log_file, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = (self.root / "server.log").read_text(errors="replace")[-2000:]
                raise RegistryError(f"mlflow server exited with {self.process.returncode}:\n{tail}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response,
            ):
                if response.status == 200:
                    return self
            time.sleep(0.5)
        self.stop()
        raise RegistryError(f"mlflow server on {self.uri} not healthy after {timeout:.0f} s")

    def stop(self) -> None:
        """Stop the server and its workers (its own process group only)."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, 15)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, 9)
            self.process.wait()

    def __enter__(self) -> LocalServer:
        return self.start() if self.process is None else self

    def __exit__(self, *_: object) -> None:
        self.stop()
