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


def stop_descendants(grace_s: float = GRACE_S, rounds: int = 20) -> list[int]:
    """Stop every descendant of this process and return only when all of them are gone.

    A snapshot then a kill is not enough: a step may start a process after the snapshot,
    and if its parent dies first it is re-parented away and no longer found as ours (a
    live step left behind, seen about once in four runs). So the tree is frozen first:
    each process listed gets SIGSTOP, which keeps it from starting more, and the tree is
    listed again until a round finds nobody new. Then all get SIGTERM and SIGCONT (a
    stopped process acts on SIGTERM only once continued), SIGKILL after GRACE_S, and
    every one is waited for.
    """
    seen: dict[int, psutil.Process] = {}
    for _ in range(rounds):
        new = [c for c in psutil.Process().children(recursive=True) if c.pid not in seen]
        if not new:
            break
        for child in new:
            with contextlib.suppress(psutil.Error):
                child.suspend()
            seen[child.pid] = child
    processes = list(seen.values())
    for child in processes:
        with contextlib.suppress(psutil.Error):
            child.terminate()
            child.resume()
    _, alive = psutil.wait_procs(processes, timeout=grace_s)
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
