"""The CPU budget from fake cgroup trees: v2 cpu.max, v1 CFS quota, parents, overrides."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from anomalyops.serving.threads import ENV, Budget, cgroup_cpus, cpu_budget, set_pool_environment


def _v2(tmp_path: Path, path: str, limits: dict[str, str]) -> tuple[Path, Path]:
    """A cgroup v2 mount with cpu.max per cgroup folder, and a /proc/self/cgroup naming PATH."""
    root = tmp_path / "cgroup"
    (root / path.lstrip("/")).mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpu memory\n")
    for folder, value in limits.items():
        (root / folder.lstrip("/") / "cpu.max").write_text(value + "\n")
    membership = tmp_path / "self-cgroup"
    membership.write_text(f"0::{path}\n")
    return root, membership


def _v1(tmp_path: Path, mount: str, path: str, quota: int, period: int = 100000) -> tuple:
    root = tmp_path / "cgroup"
    folder = root / mount / path.lstrip("/")
    folder.mkdir(parents=True)
    (folder / "cpu.cfs_quota_us").write_text(f"{quota}\n")
    (folder / "cpu.cfs_period_us").write_text(f"{period}\n")
    membership = tmp_path / "self-cgroup"
    membership.write_text(f"9:name=systemd:/\n4:memory:{path}\n2:{mount}:{path}\n0::/\n")
    return root, membership


def test_v2_quota_caps_the_affinity_mask(tmp_path):
    root, membership = _v2(tmp_path, "/kubepods/pod1/app", {"/kubepods/pod1/app": "250000 100000"})
    budget = cpu_budget(env={}, root=root, membership=membership, affinity=16)
    assert budget.threads == 2  # 2.5 CPUs: never a third thread that would be throttled
    assert "2.5" in budget.source and "kubepods/pod1/app" in budget.source


def test_v2_tightest_parent_limit_wins(tmp_path):
    root, membership = _v2(
        tmp_path,
        "/kubepods/pod1/app",
        {"/kubepods/pod1/app": "max 100000", "/kubepods/pod1": "300000 100000",
         "/kubepods": "800000 100000"},
    )  # fmt: skip
    assert cpu_budget(env={}, root=root, membership=membership, affinity=16).threads == 3


def test_v2_no_limit_leaves_the_affinity_mask(tmp_path):
    root, membership = _v2(tmp_path, "/user.slice", {"/user.slice": "max 100000"})
    budget = cpu_budget(env={}, root=root, membership=membership, affinity=6)
    assert budget == Budget(6, "6 CPUs in the affinity mask")


def test_quota_above_the_mask_does_not_raise_it(tmp_path):
    root, membership = _v2(tmp_path, "/app", {"/app": "800000 100000"})
    assert cpu_budget(env={}, root=root, membership=membership, affinity=2).threads == 2


def test_quota_below_one_cpu_still_gets_one_thread(tmp_path):
    root, membership = _v2(tmp_path, "/app", {"/app": "20000 100000"})
    assert cpu_budget(env={}, root=root, membership=membership, affinity=4).threads == 1


def test_container_without_cgroup_namespace_reads_its_mount(tmp_path):
    """/proc/self/cgroup names the host's path; the container mounts only its own cgroup."""
    root, _ = _v2(tmp_path, "/", {"/": "150000 100000"})
    membership = tmp_path / "self-cgroup"
    membership.write_text("0::/kubepods/burstable/pod9/abc\n")
    assert cgroup_cpus(root, membership) == (1.5, str(root))


@pytest.mark.parametrize("mount", ["cpu,cpuacct", "cpu"])
def test_v1_cfs_quota(tmp_path, mount):
    root, membership = _v1(tmp_path, mount, "/docker/abc", quota=150000)
    budget = cpu_budget(env={}, root=root, membership=membership, affinity=8)
    assert budget.threads == 1 and "1.5" in budget.source


def test_v1_unlimited_quota(tmp_path):
    root, membership = _v1(tmp_path, "cpu,cpuacct", "/", quota=-1)
    assert cgroup_cpus(root, membership) is None


def test_no_cgroup_files_is_no_limit(tmp_path):
    assert cgroup_cpus(tmp_path / "none", tmp_path / "missing") is None


def test_threads_flag_then_environment_override_the_cpus(tmp_path):
    root, membership = _v2(tmp_path, "/app", {"/app": "100000 100000"})
    assert cpu_budget(3, env={ENV: "5"}, root=root, membership=membership) == Budget(3, "--threads")
    assert cpu_budget(env={ENV: "5"}, root=root, membership=membership) == Budget(5, ENV)


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_bad_environment_value_is_an_error_naming_it(value):
    with pytest.raises(ValueError, match=ENV):
        cpu_budget(env={ENV: value})


def test_bad_threads_flag_is_refused():
    with pytest.raises(ValueError, match="--threads"):
        cpu_budget(0)


@pytest.mark.parametrize(("threads", "instances", "each"), [(8, 1, 8), (8, 3, 2), (2, 4, 1)])
def test_instances_share_the_budget(threads, instances, each):
    shared = Budget(threads, "x").share(instances)
    assert shared.threads == each
    assert shared.threads * instances <= max(threads, instances)  # one thread each at least


def test_pool_environment_sizes_pools_and_keeps_a_user_wait_policy():
    env = {"OMP_WAIT_POLICY": "ACTIVE", "OMP_NUM_THREADS": "64"}
    set_pool_environment(2, env)
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == "2"
    assert env["OMP_WAIT_POLICY"] == "ACTIVE" and env["KMP_BLOCKTIME"] == "0"


def test_apply_limits_torch_and_faiss_in_a_fresh_process():
    """In its own interpreter: the pools are process-wide and must not leak into other tests."""
    code = (
        "from anomalyops.serving.threads import Budget, apply; apply(Budget(1, 'test')); "
        "import os, torch, faiss; "
        "print(torch.get_num_threads(), torch.get_num_interop_threads(), "
        "faiss.omp_get_max_threads(), os.environ['OMP_NUM_THREADS'])"
    )
    answer = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert answer.stdout.split() == ["1", "1", "1", "1"]


def test_import_time_sizing_keeps_sizes_already_set():
    env = {"OMP_NUM_THREADS": "3"}
    set_pool_environment(2, env, replace=False)
    assert env["OMP_NUM_THREADS"] == "3" and env["MKL_NUM_THREADS"] == "2"
