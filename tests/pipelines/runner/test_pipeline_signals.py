"""SIGTERM to `pipeline run` stops the running step and the local MLflow server too."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

CLI = Path(sys.executable).with_name("anomalyops")


def session_members(sid: int) -> list[psutil.Process]:
    members = []
    for process in psutil.process_iter():
        try:
            if os.getsid(process.pid) == sid and process.pid != sid:
                members.append(process)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return members


def _alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.slow
def test_sigterm_stops_step_and_mlflow(weld, tmp_path):
    out = tmp_path / "out"
    run = subprocess.Popen(
        [str(CLI), "pipeline", "run", "training", "--data", str(weld), "--variant", "sig",
         "--out", str(out), "--size", "128"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        ui = None
        for line in run.stdout:
            if line.startswith("MLflow UI: "):
                ui = line.split()[2]
            if ui and line.split()[:2] == ["validate", "started"]:  # a step is running now
                break
        assert ui, "the run never printed its MLflow address"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(
            "kfp" in " ".join(p.cmdline()) for p in psutil.Process(run.pid).children(True)
        ):
            time.sleep(0.2)
        run.send_signal(signal.SIGTERM)
        rest = run.communicate(timeout=60)[0]
        assert run.returncode == 128 + signal.SIGTERM, rest[-2000:]
        assert "SIGTERM: stopping the running step and MLflow" in rest
        assert "Traceback" not in rest
        # `pipeline run` waits for its whole tree before it exits, so nothing of it may run
        # now; a zombie that init has not reaped yet is not running, so only live ones count.
        live = [p for p in session_members(run.pid) if _alive(p)]
        assert live == [], [(p.pid, p.name(), p.cmdline()[:4], p.ppid()) for p in live]
        with pytest.raises(OSError):
            urllib.request.urlopen(f"{ui}/health", timeout=2)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
