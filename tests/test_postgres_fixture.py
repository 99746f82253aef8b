"""Without a PostgreSQL server the shared-log tests skip locally but fail in CI."""

from __future__ import annotations

import postgres
import pytest


def test_a_missing_server_fails_under_ci_and_skips_elsewhere(monkeypatch):
    monkeypatch.setattr(postgres, "ENGINE_GLOB", "/nonexistent/postgresql/*/bin/initdb")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set and PostgreSQL server not"):
        postgres.require_postgres()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        postgres.require_postgres()
