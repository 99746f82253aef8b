"""A real PostgreSQL server for tests: Debian's `postgresql` package, started per session.

`initdb` refuses to run as root, so as root the data folder belongs to the `postgres`
user and initdb/pg_ctl run through `su postgres`; as any other user they run directly.
The server listens on 127.0.0.1 only, with trust authentication (nothing else can reach
this machine's loopback in a test). Each test gets its own database.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ENGINE_GLOB = "/usr/lib/postgresql/*/bin/initdb"


def postgres_bin() -> Path | None:
    """Debian's PostgreSQL binaries folder (the newest installed), or None."""
    found = sorted(glob.glob(ENGINE_GLOB), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def require_postgres() -> Path:
    """The binaries folder; without one, skip, or fail where CI is set (CI must test it)."""
    import pytest

    binaries = postgres_bin()
    if binaries is None:
        message = "PostgreSQL server not installed (apt-get install postgresql; make test does)"
        if os.environ.get("CI"):
            pytest.fail(f"CI is set and {message}")
        pytest.skip(message)
    return binaries


def _run(command: list[str], as_postgres: bool) -> None:
    if as_postgres:
        command = ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(command)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if done.returncode:
        raise RuntimeError(f"{command[0]} failed: {done.stderr.strip() or done.stdout.strip()}")


@contextmanager
def postgres_server(port: int, fsync: bool = False) -> Iterator[str]:
    """Run a fresh server on 127.0.0.1:PORT; yields its admin URL (user postgres).

    FSYNC off (tests) trades crash safety for speed; a benchmark turns it on.
    """
    binaries = postgres_bin()
    if binaries is None:
        raise FileNotFoundError(f"no PostgreSQL server ({ENGINE_GLOB}): apt-get install postgresql")
    as_postgres = os.geteuid() == 0
    folder = Path(tempfile.mkdtemp(prefix="anomalyops-pg-"))
    if as_postgres:
        shutil.chown(folder, "postgres", "postgres")
    data = folder / "data"
    _run([str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
          "--no-sync", "-E", "UTF8"], as_postgres)  # fmt: skip
    options = (
        f"-k {folder} -c listen_addresses=127.0.0.1 -p {port} -c fsync=off -c max_connections=200"
    )
    pg_ctl = [str(binaries / "pg_ctl"), "-D", str(data), "-w", "-t", "60"]
    _run([*pg_ctl, "-o", f"'{options}'", "-l", str(folder / "log"), "start"], as_postgres)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        _run([*pg_ctl, "-m", "immediate", "stop"], as_postgres)
        shutil.rmtree(folder, ignore_errors=True)


def new_database(admin_url: str) -> str:
    """CREATE DATABASE with a fresh name on the server at ADMIN_URL; the new database's URL."""
    import psycopg

    name = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{admin_url}/postgres", autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    return f"{admin_url}/{name}"
