"""How many threads a process may run: the CPUs it is given, not the CPUs the node has.

Thread pools sized for the whole machine (torch intra-op, faiss/OpenMP, onnxruntime) fight
over whatever share is left when a node is busy or a pod has a CPU limit: on 2 cores with a
CPU hog beside it, `predict` ran 4.5x slower instead of the 2x its CPU share explains
(issue 22). The budget is the smallest of: the CPUs this process may run on
(`os.sched_getaffinity`), the cgroup CPU quota of its own cgroup and every parent (v2
`cpu.max`, v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`, a Kubernetes CPU limit), unless
`--threads` or `ANOMALYOPS_THREADS` names a number. A server with several instances
divides it (`Budget.share`) so instances x threads stays within it.

Standard library only at import: Triton's python backend loads this file from beside its
model.py (serving/triton/python_backend.py), in an environment without anomalyops.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import os
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path

ENV = "ANOMALYOPS_THREADS"
CGROUP_ROOT = Path("/sys/fs/cgroup")
MEMBERSHIP = Path("/proc/self/cgroup")
# Read by OpenMP, MKL and OpenBLAS when they load: set before torch, faiss or numpy import.
POOL_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
# OpenMP workers that spin while waiting burn the share a busy node has left.
WAIT_POLICY = {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"}


@dataclass(frozen=True)
class Budget:
    """A thread count and where it came from (recorded beside timings and in logs)."""

    threads: int
    source: str

    def share(self, parts: int) -> Budget:
        """Each of PARTS instances' threads: together never more than this budget."""
        if parts < 1:
            raise ValueError(f"instances must be at least 1, got {parts}")
        if parts == 1:
            return self
        return Budget(max(1, self.threads // parts), f"{self.source}, shared by {parts} instances")

    def to_dict(self) -> dict[str, int | str]:
        return {"threads": self.threads, "source": self.source}


def _quota_cpus(quota: str, period: str) -> float | None:
    """CPUs a quota allows per period; None for no limit."""
    if quota.strip() in ("max", "-1"):
        return None
    return int(quota) / int(period)


def _ancestors(path: str) -> list[str]:
    """'/a/b' -> ['/a/b', '/a', '/']: a limit on any parent cgroup applies to this one."""
    parts = [p for p in path.split("/") if p]
    return ["/" + "/".join(parts[:n]) for n in range(len(parts), -1, -1)]


def _limits(
    mount: Path, path: str, read: Callable[[Path], float | None]
) -> list[tuple[float, str]]:
    """(CPUs, file) for every limited cgroup from PATH up; a container that sees only its
    own cgroup at the mount (no cgroup namespace) is read at the mount itself."""
    found = []
    for cgroup in _ancestors(path) if (mount / path.lstrip("/")).is_dir() else ["/"]:
        folder = mount / cgroup.lstrip("/")
        cpus = read(folder)
        if cpus is not None:
            found.append((cpus, str(folder)))
    return found


def _read_v2(folder: Path) -> float | None:
    try:
        quota, period = (folder / "cpu.max").read_text().split()
    except (OSError, ValueError):
        return None
    return _quota_cpus(quota, period)


def _read_v1(folder: Path) -> float | None:
    try:
        quota = (folder / "cpu.cfs_quota_us").read_text()
        period = (folder / "cpu.cfs_period_us").read_text()
    except OSError:
        return None
    return _quota_cpus(quota, period)


def cgroup_cpus(
    root: Path = CGROUP_ROOT, membership: Path = MEMBERSHIP
) -> tuple[float, str] | None:
    """The tightest cgroup CPU quota over this process (CPUs, the file's folder), or None."""
    try:
        lines = membership.read_text().splitlines()
    except OSError:
        return None
    found: list[tuple[float, str]] = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "" and (root / "cgroup.controllers").is_file():  # cgroup v2
            found += _limits(root, path, _read_v2)
        elif "cpu" in controllers.split(","):  # cgroup v1: mounted as cpu or cpu,cpuacct
            for mount in (root / controllers, root / "cpu", root / "cpu,cpuacct"):
                if mount.is_dir():
                    found += _limits(mount, path, _read_v1)
                    break
    return min(found, default=None)


def _affinity() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def cpu_budget(
    requested: int | None = None,
    env: Mapping[str, str] = os.environ,
    root: Path = CGROUP_ROOT,
    membership: Path = MEMBERSHIP,
    affinity: int | None = None,
) -> Budget:
    """REQUESTED threads (`--threads`), else ANOMALYOPS_THREADS, else the CPUs given."""
    if requested is not None:
        if requested < 1:
            raise ValueError(f"--threads must be at least 1, got {requested}")
        return Budget(requested, "--threads")
    if env.get(ENV, "").strip():
        value = env[ENV].strip()
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"{ENV} must be a positive integer, got {value!r}")
        return Budget(int(value), ENV)
    cpus = _affinity() if affinity is None else affinity
    budget = Budget(cpus, f"{cpus} CPUs in the affinity mask")
    quota = cgroup_cpus(root, membership)
    if quota is not None and math.floor(quota[0]) < cpus:  # below one CPU still gets one
        budget = Budget(max(1, math.floor(quota[0])), f"CPU quota {quota[0]:g} in {quota[1]}")
    return budget


def set_pool_environment(
    threads: int, env: MutableMapping[str, str] = os.environ, replace: bool = True
) -> None:
    """Size OpenMP/MKL/OpenBLAS pools for libraries not yet imported (REPLACE=False keeps
    sizes already set), and make their waiting workers sleep rather than spin: two OpenMP
    runtimes (torch's and faiss') spinning on 2 busy cores made `predict` 10x slower."""
    for name in POOL_VARIABLES:
        if replace or name not in env:
            env[name] = str(threads)
    for name, value in WAIT_POLICY.items():
        env.setdefault(name, value)


def apply(budget: Budget) -> Budget:
    """Limit this process's torch and faiss pools (where installed) to BUDGET's threads."""
    set_pool_environment(budget.threads)
    if importlib.util.find_spec("torch") is not None:
        import torch

        torch.set_num_threads(budget.threads)
        with contextlib.suppress(RuntimeError):  # allowed once, before inter-op work starts
            torch.set_num_interop_threads(budget.threads)
    if importlib.util.find_spec("faiss") is not None:
        import faiss

        faiss.omp_set_num_threads(budget.threads)
    return budget
