"""The one skip rule for the whole suite (tests/conftest.py re-exports it as the `requires`
fixture). A module of its own because helper modules (k8s_schemas) need it too, and
`from conftest import` would find whichever conftest.py loaded first."""

from __future__ import annotations

import os

import pytest


def require_or_skip(present: bool, reason: str) -> None:
    """Skip on a user's machine that lacks a tool, a server or ../shared; fail when `CI`
    is set (.ci/run sets it), where everything must be present."""
    if present:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must have it)")
    pytest.skip(reason)
