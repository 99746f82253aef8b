"""A real Triton server on 127.0.0.1: the binary bundled in the `nvidia-pytriton` wheel.

pytriton needs numpy<2, so it lives in its own virtual environment (`make triton-venv`,
default `.venv-triton`, or ANOMALYOPS_TRITON_VENV). That build has only the python
backend, which is why local serving uses the `python` repository flavour. Triton runs with
explicit model control and loads, at start, every model of the repository that has a
config.pbtxt: the version that config names (serving/triton/repository.py), so what is served
survives a restart. `serve` supervises it: a Triton that dies is reported (exit code or
signal, and its last log lines) and restarted with backoff; SIGTERM/SIGINT/SIGHUP stop
Triton's whole process group; and Triton gets SIGTERM if `serve` itself is killed.
Plants reach it through serving/triton/front.py, never directly. Triton's gRPC endpoint is off
(nothing here speaks it), and on its HTTP port the model-control, logging, trace,
shared-memory and statistics APIs answer only requests that carry the header
`CONTROL_HEADER` with the token `serve` writes, owner-readable only, to the repository's
`CONTROL_TOKEN_FILE` (Triton's `--http-restricted-api`): whoever can write the
repository can change what is served anyway, so deploy and rollback read the token from
there, and a plant, which never sees the repository, cannot load or unload a model.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from anomalyops.serving.ports import free_port

if TYPE_CHECKING:
    from types import TracebackType

    from anomalyops.serving.triton.front import Limits

REPO_ROOT = Path(__file__).resolve().parents[2]
_NOISE = re.compile(r"^\s*\d+# |^I\d{4} ")
CONTROL_HEADER = "anomalyops-model-control"
CONTROL_TOKEN_FILE = ".model-control-token"
_RESTRICTED = "model-repository,logging,trace,shared-memory,statistics"


def control_headers(repository: str | Path) -> dict[str, str]:
    """The header deploy and rollback send with model control; empty when none was written."""
    path = Path(repository) / CONTROL_TOKEN_FILE
    return {CONTROL_HEADER: path.read_text().strip()} if path.is_file() else {}


def _write_token(repository: Path) -> str:
    """A fresh token in REPOSITORY/CONTROL_TOKEN_FILE, mode 0600 from its creation on."""
    token = secrets.token_urlsafe(32)
    staged = repository / f"{CONTROL_TOKEN_FILE}.{os.getpid()}.tmp"
    try:
        staged.unlink(missing_ok=True)
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(token)
        os.replace(staged, repository / CONTROL_TOKEN_FILE)
    except OSError as error:
        raise RuntimeError(
            f"{repository / CONTROL_TOKEN_FILE}: cannot write the model-control "
            f"token ({error.strerror}); serve needs a writable repository"
        ) from None
    return token


class TritonUnavailableError(RuntimeError):
    """The Triton virtual environment or its server binary is not there."""


def triton_venv() -> Path:
    return Path(os.environ.get("ANOMALYOPS_TRITON_VENV", REPO_ROOT / ".venv-triton"))


def _venv_facts(venv: Path) -> dict[str, str]:
    """site-packages, libpython dir and X.Y version of the venv's interpreter."""
    python = venv / "bin" / "python"
    if not python.exists():
        raise TritonUnavailableError(
            f"{python}: missing; create the Triton environment with `make triton-venv`"
        )
    code = (
        "import json, sys, sysconfig; print(json.dumps({"
        "'site': sysconfig.get_paths()['purelib'], 'libdir': sysconfig.get_config_var('LIBDIR'),"
        " 'version': '%d.%d' % sys.version_info[:2]}))"
    )
    return json.loads(subprocess.run([python, "-c", code], capture_output=True, check=True).stdout)


class PortInUseError(RuntimeError):
    """The port asked for already answers: an older server (maybe an orphaned Triton)."""


def require_free_port(port: int, what: str) -> None:
    """Refuse a taken port up front, so a stale server is never mistaken for ours."""
    with socket.socket() as sock:
        # As servers do: a port left in TIME_WAIT is free, one with a listener is not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            raise PortInUseError(
                f"127.0.0.1:{port} ({what}) is already in use: another `anomalyops serve` "
                "or an orphaned tritonserver? stop it or choose another port"
            ) from None


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the process that started us dies (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def served_models(repository: Path) -> list[str]:
    """Models of the repository Triton should load: those with a config.pbtxt."""
    return sorted(p.parent.name for p in repository.glob("*/config.pbtxt"))


class TritonServer:
    """`with TritonServer(repo) as server:` starts Triton, waits until ready, stops it."""

    def __init__(
        self,
        repository: str | Path,
        venv: str | Path | None = None,
        http_port: int | None = None,
        startup_timeout: float = 120.0,
        log_path: str | Path | None = None,
    ) -> None:
        self.repository = Path(repository).resolve()
        if not self.repository.is_dir():
            raise FileNotFoundError(f"{self.repository}: model repository not found")
        self.venv = Path(venv) if venv else triton_venv()
        self.http_port = http_port or free_port()
        self.startup_timeout = startup_timeout
        self.log_path = Path(log_path) if log_path else None
        self.process: subprocess.Popen | None = None
        self._token = ""
        self._workdir: Path | None = None
        self._log = None

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    def _command_and_env(self) -> tuple[list[str], dict[str, str]]:
        facts = _venv_facts(self.venv)
        dist = Path(facts["site"]) / "pytriton" / "tritonserver"
        binary = dist / "bin" / "tritonserver"
        stub = dist / "python_backend_stubs" / facts["version"] / "triton_python_backend_stub"
        for path in (binary, stub):
            if not path.is_file():
                raise TritonUnavailableError(f"{path}: missing from nvidia-pytriton in {self.venv}")
        # The python backend finds its stub beside libtriton_python.so: assemble that folder.
        self._workdir = self._workdir or Path(tempfile.mkdtemp(prefix="anomalyops-triton-"))
        backends = self._workdir / "backends"
        if not backends.is_dir():
            shutil.copytree(dist / "backends", backends)
            shutil.copy2(stub, backends / "python" / "triton_python_backend_stub")
        env = dict(os.environ)
        # The stub links the system libpython; without its dir first, model loading fails
        # with "'_thread.RLock' object has no attribute '_recursion_count'".
        libs = [facts["libdir"], str(Path(facts["site"]) / "nvidia_pytriton.libs")]
        env["LD_LIBRARY_PATH"] = ":".join([*libs, env.get("LD_LIBRARY_PATH", "")]).rstrip(":")
        env["PYTHONPATH"] = facts["site"]
        env["PATH"] = f"{self.venv / 'bin'}:{env.get('PATH', '')}"
        command = [
            str(binary),
            f"--model-repository={self.repository}",
            f"--backend-directory={backends}",
            "--http-address=127.0.0.1",
            f"--http-port={self.http_port}",
            "--allow-grpc=false",
            f"--http-restricted-api={_RESTRICTED}:{CONTROL_HEADER}={self._token}",
            "--model-control-mode=explicit",
            *(f"--load-model={name}" for name in served_models(self.repository)),
            "--allow-metrics=false",
            "--exit-on-error=true",
            "--strict-readiness=true",
            "--log-verbose=0",
            "--exit-timeout-secs=5",
        ]
        return command, env

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.url}/v2/health/ready", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def start(self) -> TritonServer:
        require_free_port(self.http_port, "Triton HTTP")
        self._token = self._token or _write_token(self.repository)
        command, env = self._command_and_env()
        log_path = self.log_path or self._workdir / "tritonserver.log"
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 (closed in stop; restarts append)
        self.process = subprocess.Popen(
            command, env=env, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=_die_with_parent,
        )  # fmt: skip
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                reason = self.exit_reason()
                self.stop()
                raise RuntimeError(f"tritonserver did not start: {reason}")
            if self._ready():
                return self
            time.sleep(0.25)
        tail = self.logs()[-3000:]
        self.stop()
        raise TimeoutError(f"tritonserver not ready after {self.startup_timeout:.0f} s:\n{tail}")

    def logs(self) -> str:
        if self.log_path and self.log_path.is_file():
            return self.log_path.read_text(errors="replace")
        return ""

    def exit_reason(self, lines: int = 3) -> str:
        """How the process ended (exit code or signal) and its last log lines."""
        code = self.process.returncode if self.process else None
        if code is None:
            return "still running"
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        # Not stack frames nor info lines: "what(): std::bad_alloc", "Signal (6) received."
        last = [x for x in self.logs().splitlines() if x.strip() and not _NOISE.match(x)][-lines:]
        return how + ("; last log lines:\n  " + "\n  ".join(last) if last else "")

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM to Triton's process group (it drains in-flight requests), then SIGKILL."""
        if self.process and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self.process:  # python backend stubs left behind by a crash
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        if self._log:
            self._log.close()
            self._log = None
        if self._workdir:
            shutil.rmtree(self._workdir / "backends", ignore_errors=True)

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()


def _say(message: str, error: bool = False) -> None:
    print(message, file=sys.stderr if error else sys.stdout, flush=True)


def serve(
    repository: str | Path,
    port: int | None = None,
    triton_port: int | None = None,
    limits: Limits | None = None,
    metrics_port: int | None = None,
    max_backoff: float = 30.0,
    stable_after: float = 60.0,
) -> int:
    """`anomalyops serve`: Triton behind the front, restarted when it dies, until a signal.

    Restarts back off 1, 2, 4 ... MAX_BACKOFF seconds; the delay resets once Triton has
    stayed up STABLE_AFTER seconds. Returns 0 after SIGTERM/SIGINT/SIGHUP.
    """
    from anomalyops.serving.triton.front import Front, Limits

    port = port or free_port()
    require_free_port(port, "front")
    if metrics_port is not None:
        require_free_port(metrics_port, "metrics")
    stop = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(number, lambda *_: stop.set())
    server = TritonServer(repository, http_port=triton_port)
    server.start()
    front = Front(server.url, port, limits=limits or Limits(), metrics_port=metrics_port)
    try:
        front.start()
        _say(f"serving {server.repository} ({', '.join(served_models(server.repository))})\n"
             f"  plants: http://{front.url} (front: body <= {front.limits.max_body} bytes, "
             f"JSON depth <= {front.limits.max_depth}, shapes checked)\n"
             f"  model control (deploy/rollback --triton-url; token in "
             f"{server.repository / CONTROL_TOKEN_FILE}): http://{server.url}\n"
             + (f"  metrics (Prometheus): http://{front.host}:{metrics_port}/metrics\n"
                if metrics_port is not None else "")
             + f"  Triton log: {server.log_path}")  # fmt: skip
        delay, since = 1.0, time.monotonic()
        while not stop.wait(0.5):
            if server.process.poll() is None:
                if time.monotonic() - since > stable_after:
                    delay = 1.0
                continue
            _say(f"tritonserver died ({server.exit_reason()}); restarting in {delay:.0f} s", True)
            server.stop()
            if stop.wait(delay):
                break
            delay = min(delay * 2, max_backoff)
            try:
                server.start()
            except (RuntimeError, TimeoutError) as error:
                _say(f"restart failed: {error}", True)
                continue
            since = time.monotonic()
            _say(f"tritonserver restarted on http://{server.url}")
    finally:
        front.stop()
        server.stop()
    _say("stopped: tritonserver and front shut down")
    return 0
