"""Per-variant drift alert state: hysteresis and cooldown, so one odd hour does not flap.

A check measures a drift ratio (components/drift/check.py: the strongest column's drift over
its threshold). The alert turns on when the ratio reaches the raise mark and turns off
only when it falls below the lower clear mark; in between it keeps its last state. An
alert is *raised* (what starts retraining) when the state turns on, and again while it
stays on once the cooldown after the last raised alert has passed; never within the
cooldown. A new champion starts with the alert off (its own reference, its own rows),
but the cooldown carries over: retraining cannot be re-triggered at once by its result.

The state is one small JSON file per variant beside the check outputs, written
atomically under a file lock so concurrent checks of one variant queue.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path

from filelock import FileLock

STATE_FILE = "state.json"


@dataclass
class AlertState:
    active: bool = False  # the alert is on (hysteresis)
    model_version: str | None = None  # the champion the state is about
    last_alert: str | None = None  # ISO time of the last raised alert
    since: str | None = None  # ISO time the alert turned on

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Transition:
    state: AlertState  # after this check
    raised: bool  # an alert is raised now
    # 'drift' (alert raised), 'drifting' (alert on, raised before), 'cooldown' (drift seen,
    # alert held back), 'cleared' (alert turned off), 'no drift'
    status: str
    reason: str


def step(
    state: AlertState,
    ratio: float,
    model_version: str | None,
    now: datetime,
    raise_at: float,
    clear_below: float,
    cooldown: timedelta,
) -> Transition:
    """The state after a check that measured RATIO at NOW (pure: no files)."""
    if not clear_below <= raise_at:
        raise ValueError(f"clear mark {clear_below} must not exceed the raise mark {raise_at}")
    was_active = state.active and state.model_version == model_version
    active = ratio >= raise_at or (was_active and ratio >= clear_below)
    since = (state.since if was_active else now.isoformat()) if active else None
    last_alert = state.last_alert
    if not active:
        status = "cleared" if was_active else "no drift"
        reason = (
            f"drift ratio {ratio:.2f} below the clear mark {clear_below:.2f}"
            if was_active
            else f"drift ratio {ratio:.2f} below the raise mark {raise_at:.2f}"
        )
        return Transition(AlertState(False, model_version, last_alert), False, status, reason)
    quiet_until = datetime.fromisoformat(last_alert) + cooldown if last_alert else None
    if quiet_until is not None and now < quiet_until:
        status, raised = ("drifting" if was_active else "cooldown"), False
        reason = (
            f"drift ratio {ratio:.2f}: drifting, no new alert until "
            f"{quiet_until.isoformat(timespec='seconds')} (cooldown after the alert of "
            f"{last_alert})"
        )
    elif was_active:
        status, raised = "drift", True
        reason = f"drift ratio {ratio:.2f}: drift persists after the cooldown; alert raised again"
    else:
        status, raised = "drift", True
        reason = f"drift ratio {ratio:.2f} reached the raise mark {raise_at:.2f}; alert raised"
    if raised:
        last_alert = now.isoformat()
    return Transition(AlertState(True, model_version, last_alert, since), raised, status, reason)


def _read(path: Path) -> AlertState:
    if not path.is_file():
        return AlertState()
    try:
        body = json.loads(path.read_text())
        return AlertState(**{k: body.get(k) for k in AlertState.__dataclass_fields__})
    except (json.JSONDecodeError, TypeError) as error:
        raise ValueError(f"{path}: not a drift state file ({error})") from None


def _write(path: Path, state: AlertState) -> None:
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, prefix=f".{path.name}.", delete=False
    ) as handle:
        json.dump(state.to_dict(), handle, indent=2)
    os.replace(handle.name, path)


@contextlib.contextmanager
def locked_state(folder: str | Path) -> Iterator[tuple[AlertState, Callable[[AlertState], None]]]:
    """The variant's state and a `save(state)`, held under the variant's lock."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / STATE_FILE
    with FileLock(str(path) + ".lock"):
        yield _read(path), lambda state: _write(path, state)
