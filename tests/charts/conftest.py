"""Chart fixtures: the real helm (v3.17, `make helm` puts it in .tools/) and rendered sets."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest
import yaml
from chart_values import CHART, HELM, values_args
from k8s_schemas import require_or_skip


@pytest.fixture(scope="session")
def helm() -> Callable[..., subprocess.CompletedProcess]:
    """`helm(*args)`: run the real helm binary, never raising on its exit status."""
    require_or_skip(HELM.is_file(), f"helm not found at {HELM}: run `make helm`")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(HELM), *args], capture_output=True, text=True, timeout=120, check=False
        )

    return run


@pytest.fixture(scope="session")
def render(helm) -> Callable[..., list[dict]]:
    """`render(value_set, *extra_args)`: the objects `helm template` makes (cached)."""
    cache: dict[tuple[str, ...], list[dict]] = {}

    def run(value_set: str = "default", *extra: str) -> list[dict]:
        key = (value_set, *extra)
        if key not in cache:
            args = ["template", "rel", str(CHART), "--namespace", "plant", *values_args(value_set)]
            result = helm(*args, *extra)
            assert result.returncode == 0, result.stderr
            cache[key] = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
        return cache[key]

    return run
