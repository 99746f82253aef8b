"""Stop what a local pipeline run started when the run itself is told to stop.

`pipeline run` starts an MLflow server (its own session) and kfp.local runs each step as
a child process; a SIGTERM to the CLI alone would leave both running. On SIGTERM (or
SIGHUP) every descendant gets SIGTERM, then SIGKILL after a grace period, and the run
ends with SystemExit(128 + signal) so `finally` blocks still run. Descendants are found
by parentage (psutil), not by process group: the CLI need not lead its group, and
killing a group it merely belongs to could hit its caller.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator

import psutil

GRACE_S = 10.0


def stop_descendants(grace_s: float = GRACE_S, rounds: int = 5) -> list[int]:
    """SIGTERM every descendant of this process, SIGKILL those still alive after GRACE_S,
    and return only when all of them are gone.

    One snapshot is not enough: a step may start a process after it was taken (kfp.local
    launching the next step, a step's own worker), and a killed process is still listed
    until it is reaped. So the tree is listed again until a round finds nobody new, and
    killed processes are waited for too.
    """
    seen: dict[int, psutil.Process] = {}
    for _ in range(rounds):
        new = [c for c in psutil.Process().children(recursive=True) if c.pid not in seen]
        if not new:
            break
        seen.update((child.pid, child) for child in new)
        for child in new:
            with contextlib.suppress(psutil.Error):
                child.terminate()
        _, alive = psutil.wait_procs(new, timeout=grace_s)
        for child in alive:
            with contextlib.suppress(psutil.Error):
                child.kill()
        psutil.wait_procs(alive, timeout=grace_s)
    return list(seen)


@contextlib.contextmanager
def stop_children_on_termination() -> Iterator[None]:
    """Within the block, SIGTERM/SIGHUP stop all descendants, then exit 128 + signal."""

    def handler(signum: int, _frame: object) -> None:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # one clean-up, however many signals come
        print(f"\n{signal.Signals(signum).name}: stopping the running step and MLflow",
              file=sys.stderr)  # fmt: skip
        stop_descendants()
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, action in previous.items():
            signal.signal(sig, action)
