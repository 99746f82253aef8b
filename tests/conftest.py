"""Shared fixtures: real data (weld ships in tests/data; the larger sets beside the
repository in ../shared/data), and small decoded splits."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from skip_rule import require_or_skip

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ANOMALYOPS_DATA", REPO.parent / "shared" / "data"))
WELD = REPO / "tests" / "data" / "weld"  # shipped: weld tests never skip
BOTTLE = DATA / "mvtec_ad" / "bottle"
MACARONI = DATA / "visa" / "macaroni1"


@pytest.fixture(scope="session")
def requires():
    """`requires(present, reason)` for tests: the skip rule above."""
    return require_or_skip


def require(path: Path) -> Path:
    require_or_skip(path.is_dir(), f"real data not found at {path} (set ANOMALYOPS_DATA)")
    return path


@pytest.fixture(scope="session")
def weld() -> Path:
    return require(WELD)


@pytest.fixture(scope="session")
def bottle() -> Path:
    return require(BOTTLE)


@pytest.fixture(scope="session")
def macaroni() -> Path:
    return require(MACARONI)


@pytest.fixture(scope="session")
def weld_splits(weld):
    from anomalyops.components.data.datasets import FolderDataset

    dataset = FolderDataset(weld)
    return dataset.load_train((256, 256), progress=False), dataset.load_test(
        (256, 256), progress=False
    )


@pytest.fixture(scope="session")
def triton_server():
    """`with triton_server(repository) as server:` runs the real bundled Triton on it."""
    from anomalyops.serving.triton.server import TritonServer, triton_venv

    require_or_skip(
        (triton_venv() / "bin" / "python").exists(),
        f"Triton environment {triton_venv()} absent: run `make triton-venv`",
    )
    return TritonServer


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def s3_server():
    """A real S3-compatible server (moto in server mode) on 127.0.0.1 for the whole session.

    It stands in for the cluster's bucket: the code under test talks to it with the real
    boto3 client, found through AWS_ENDPOINT_URL_S3 as on a cluster with MinIO.
    """
    import shutil
    import subprocess
    import sys
    import time
    import urllib.request

    from anomalyops.serving.ports import free_port

    executable = Path(sys.executable).with_name("moto_server")
    require_or_skip(
        executable.exists() or shutil.which("moto_server") is not None,
        "moto_server not installed (dev extra moto[server])",
    )
    port = free_port()
    process = subprocess.Popen(
        [str(executable) if executable.exists() else "moto_server", "-H", "127.0.0.1",
         "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"moto_server did not start on {endpoint}")
            time.sleep(0.2)
    yield endpoint
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def s3_bucket(s3_server, monkeypatch) -> str:
    """A fresh, empty bucket on the session's S3 server; returns its s3:// URI.

    The AWS variables are set the way a cluster's Secret sets them for a pod.
    """
    import uuid

    import boto3

    for key, value in {
        "AWS_ENDPOINT_URL_S3": s3_server,
        "MLFLOW_S3_ENDPOINT_URL": s3_server,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    name = f"test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=name)
    return f"s3://{name}"


CHROMIUM = Path("/usr/bin/chromium")  # Debian's; `make browser` installs it
# No sandbox (CI runs as root); nothing that reaches out of this closed network.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.fixture(scope="session")
def browser():
    """Headless Debian chromium driven by Playwright (its own browser download fails here)."""
    require_or_skip(CHROMIUM.is_file(), f"{CHROMIUM} absent: run `make browser`")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def postgres_admin():
    """A real PostgreSQL server (Debian's package) for the session; its admin URL.

    Missing server: the test is skipped on a developer's machine, but fails where the
    environment variable CI is set, so a CI run cannot pass without testing PostgreSQL.
    """
    from postgres import postgres_server, require_postgres

    from anomalyops.serving.ports import free_port

    require_postgres()
    with postgres_server(free_port()) as url:
        yield url


@pytest.fixture
def postgres_url(postgres_admin) -> str:
    """A fresh, empty database on the session's PostgreSQL server; its postgresql:// URL."""
    from postgres import new_database

    return new_database(postgres_admin)


@pytest.fixture(params=["sqlite", "postgresql"])
def log_url(request, tmp_path) -> str:
    """Where a prediction log lives, once per backend: a SQLite path, then a PostgreSQL URL."""
    if request.param == "sqlite":
        return str(tmp_path / "log.db")
    return request.getfixturevalue("postgres_url")
