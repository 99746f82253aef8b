"""Per-variant registry lock: a lease held in MLflow that a later run can take over safely.

Registrations of one variant may run on different machines, so the lock lives in the
tracking server. Creating a registered model is atomic (names are unique), so the lock is
a registered model `_lock.<variant>.<epoch>`; the highest epoch is the current lock. Its
tags name the owner (a random id, host and pid) and when its lease `expires`; the holder
renews the lease from a background thread while it works.

Taking over never deletes or edits someone else's lock, so there is no check-then-delete
race: a run that finds the current lock released or its lease expired creates the next
epoch, and only one contender can. The new holder then deletes the lower epochs. A holder
whose lock was taken over (a later epoch exists, or its lease ran out unrenewed) learns it
from `check()`, which the registry calls before every change it commits (fencing).
Leases compare wall clocks of different machines: keep them NTP-synchronised, and the
lease (30 s) well above their skew.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

LOCK_PREFIX = "_lock."
LEASE_S = 30.0
WAIT_S = 120.0


class LockError(RuntimeError):
    """The variant lock could not be taken, or was lost; the message names its holder."""


def error_code(error: BaseException) -> str:
    return getattr(error, "error_code", "")


@dataclass(frozen=True)
class LockState:
    """One epoch of a variant's lock as the server holds it."""

    name: str
    epoch: int
    tags: dict[str, str]

    @property
    def expires(self) -> float:
        try:
            return float(self.tags.get("expires", "0"))
        except ValueError:
            return 0.0

    def describe(self) -> str:
        owner, pid, host = (self.tags.get(k, "?") for k in ("owner", "pid", "host"))
        return f"{self.name} (owner {owner[:8]}, pid {pid} on {host})"


def lock_states(client: Any, variant: str) -> list[LockState]:
    """Every epoch of VARIANT's lock on the server, lowest first."""
    prefix = f"{LOCK_PREFIX}{variant}."
    states = []
    for model in client.search_registered_models(f"name LIKE '{prefix}%'"):
        epoch = model.name.removeprefix(prefix)
        if model.name.startswith(prefix) and epoch.isdigit():
            states.append(LockState(model.name, int(epoch), dict(model.tags or {})))
    return sorted(states, key=lambda s: s.epoch)


def force_unlock(client: Any, variant: str) -> list[str]:
    """Delete every epoch of VARIANT's lock (operators, when a run is known to be dead)."""
    removed = []
    for state in lock_states(client, variant):
        with contextlib.suppress(Exception):
            client.delete_registered_model(state.name)
            removed.append(state.describe())
    return removed


class VariantLock:
    """`with VariantLock(client, variant) as lock:` ... `lock.check()` before committing."""

    def __init__(
        self,
        client: Any,
        variant: str,
        lease_s: float = LEASE_S,
        wait_s: float = WAIT_S,
        retry: Callable[[str, Callable[[], Any]], Any] = lambda _what, call: call(),
    ) -> None:
        self.client, self.variant = client, variant
        self.lease_s, self.wait_s, self.retry = lease_s, wait_s, retry
        self.owner = uuid.uuid4().hex
        self.name: str | None = None
        self.renewed = 0.0  # local monotonic time of the last successful lease write
        self.lost: str | None = None
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def _tags(self) -> dict[str, str]:
        return {"owner": self.owner, "host": socket.gethostname(), "pid": str(os.getpid()),
                "expires": f"{time.time() + self.lease_s:.3f}"}  # fmt: skip

    def acquire(self) -> VariantLock:
        deadline = time.monotonic() + self.wait_s
        while True:
            states = self.retry(
                "read registry lock", lambda: lock_states(self.client, self.variant)
            )
            top = states[-1] if states else None
            if top is None or top.expires < time.time():
                if top is not None:
                    log.warning("taking over registry lock %s: lease expired %.0f s ago",
                                top.describe(), time.time() - top.expires)  # fmt: skip
                if self._try_create((top.epoch if top else 0) + 1):
                    return self
                continue
            if time.monotonic() > deadline:
                raise LockError(
                    f"registry lock {top.describe()} still held after {self.wait_s:.0f} s "
                    f"(lease renewed until {time.ctime(top.expires)}); if that run is dead, "
                    f"its lease ends within {self.lease_s:.0f} s, or an operator can pass "
                    "--force-unlock"
                )
            time.sleep(0.25)

    def _try_create(self, epoch: int) -> bool:
        name = f"{LOCK_PREFIX}{self.variant}.{epoch}"
        started = time.monotonic()
        try:
            self.client.create_registered_model(name, tags=self._tags())
        except Exception as error:
            if error_code(error) == "RESOURCE_ALREADY_EXISTS":
                return False  # another contender took this epoch first
            raise
        states = lock_states(self.client, self.variant)
        if any(s.epoch > epoch for s in states):  # we read an old top: not ours after all
            with contextlib.suppress(Exception):
                self.client.delete_registered_model(name)
            return False
        self.name, self.renewed = name, started
        for stale in states:
            if stale.epoch < epoch:
                with contextlib.suppress(Exception):
                    self.client.delete_registered_model(stale.name)
        self._heartbeat = threading.Thread(target=self._renew, name=f"lease {name}", daemon=True)
        self._heartbeat.start()
        return True

    def _renew(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            try:
                states = lock_states(self.client, self.variant)
                if not states or states[-1].name != self.name:
                    self.lost = f"{self.name} was taken over by another run"
                    return
                started = time.monotonic()
                self.client.set_registered_model_tag(
                    self.name, "expires", f"{time.time() + self.lease_s:.3f}"
                )
                self.renewed = started
            except Exception as error:  # the server may be back before the lease ends
                log.warning("renewing registry lock %s failed: %s", self.name, error)

    def check(self) -> None:
        """Raise LockError unless this run still holds the lock (call before committing)."""
        if self.lost is None and time.monotonic() - self.renewed > self.lease_s:
            self.lost = f"the lease of {self.name} ran out without renewal"
        if self.lost is None:
            states = self.retry(
                "read registry lock", lambda: lock_states(self.client, self.variant)
            )
            if not states or states[-1].name != self.name:
                self.lost = f"{self.name} was removed or taken over by another run"
        if self.lost is not None:
            raise LockError(f"registry lock lost: {self.lost}")

    def release(self) -> None:
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=5)
        if self.name is not None and self.lost is None:
            with contextlib.suppress(Exception):
                self.client.delete_registered_model(self.name)
        self.name = None

    def __enter__(self) -> VariantLock:
        return self.acquire()

    def __exit__(self, *_: object) -> None:
        self.release()
