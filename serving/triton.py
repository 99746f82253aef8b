"""A real Triton server on 127.0.0.1: the binary bundled in the `nvidia-pytriton` wheel.

pytriton needs numpy<2, so it lives in its own virtual environment (`make triton-venv`,
default `.venv-triton`, or ANOMALYOPS_TRITON_VENV). That build has only the python
backend, which is why local serving uses the `python` repository flavour.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

REPO_ROOT = Path(__file__).resolve().parents[1]


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
        self._workdir = Path(tempfile.mkdtemp(prefix="anomalyops-triton-"))
        backends = self._workdir / "backends"
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
            "--grpc-address=127.0.0.1",
            f"--grpc-port={free_port()}",
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
        command, env = self._command_and_env()
        log_path = self.log_path or self._workdir / "tritonserver.log"
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            command, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.logs()[-3000:]
                self.stop()
                raise RuntimeError(f"tritonserver exited with {self.process.returncode}:\n{tail}")
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

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (Triton drains in-flight requests), then SIGKILL if it hangs."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
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


def serve(repository: str | Path, http_port: int | None = None) -> int:
    """Run Triton in the foreground until interrupted (`anomalyops serve`)."""
    with TritonServer(repository, http_port=http_port) as server:
        print(f"triton ready at http://{server.url} serving {server.repository}", flush=True)
        try:
            while server.process and server.process.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
        return server.process.returncode or 0 if server.process else 0
