"""Retrying transient failures with exponential backoff (tenacity), for every client here.

The registry (MLflow) and the plant client (Triton) retry the same way: only errors the
caller calls transient, waits of backoff·2^k seconds, a warning per retry; the last error
propagates unchanged so the caller can turn it into its own one-line message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import tenacity

T = TypeVar("T")


def call_with_retries(
    call: Callable[[], T],
    what: str,
    attempts: int,
    backoff: float,
    retryable: Callable[[BaseException], bool],
    log: logging.Logger,
) -> T:
    """call() up to ATTEMPTS times while RETRYABLE(error); re-raises the last error."""

    def warn(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning("%s failed (%s); retry %d in %.1f s", what, error, state.attempt_number, wait)

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(max(1, attempts)),
        wait=tenacity.wait_exponential(multiplier=backoff, max=60),
        retry=tenacity.retry_if_exception(retryable),
        before_sleep=warn,
        reraise=True,
    )
    return retrying(call)
