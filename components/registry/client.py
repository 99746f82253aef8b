"""Talking to the MLflow registry: one client, retries for transient errors, aliases.

Every registry module goes through `mlflow_client` and `with_retries`: MLflow's own
retries wait minutes on a dead server, ours fail within seconds and say which call failed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar

from anomalyops.components.registry.lock import error_code
from anomalyops.serving.retries import call_with_retries

T = TypeVar("T")
log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"
EXPORT_PATH = "export"  # run artifact folder holding the exported model (serving contract)
# Error codes that a retry can cure; anything else (bad input, missing model) fails at once.
TRANSIENT_CODES = {"INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED"}


class RegistryError(RuntimeError):
    """Registration failed; the message says at which stage and why."""


def is_transient(error: Exception) -> bool:
    from mlflow.exceptions import MlflowException

    if isinstance(error, MlflowException):
        code = getattr(error, "error_code", "")
        text = str(error)
        return code in TRANSIENT_CODES or "failed with exception" in text or "database is" in text
    return isinstance(error, OSError | ConnectionError | TimeoutError)


def with_retries(what: str, call: Callable[[], T], attempts: int = 4, backoff: float = 0.5) -> T:
    """Call, retrying transient server errors with exponential backoff, then fail clearly."""
    try:
        return call_with_retries(call, what, attempts, backoff, is_transient, log)
    except Exception as error:
        if not is_transient(error):
            raise
        raise RegistryError(
            f"{what}: tracking server still failing after {attempts} attempts: "
            f"{str(error).splitlines()[0][:300]}"
        ) from error


def mlflow_client(tracking_uri: str) -> Any:
    """An MlflowClient for TRACKING_URI (registry on the same server), with our retry policy."""
    # Our retries, not MLflow's (its default waits minutes on a dead server).
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def alias_version(client: Any, name: str, alias: str) -> Any:
    """The version ALIAS points at, or None."""
    try:
        return client.get_model_version_by_alias(name, alias)
    except Exception as error:
        if error_code(error) in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise
