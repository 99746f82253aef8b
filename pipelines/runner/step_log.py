"""A local run's console: one line per step as it starts and ends, the full logs in a file.

kfp.local prints every executor's INFO log, each step's JSON outputs and artifact
download bars to stdout (about 750 lines for the training pipeline), and on failure
raises a RuntimeError naming only the task. `StepLog` stands in for stdout: it writes
everything to LOG_PATH, shows the reader one line when a step starts and one when it
ends (name, seconds, status), and keeps the tail, from which `step_error` takes the last
exception the failing step raised, with the lines that continue its message (file lists
of a validation failure, say), so the error is printed in full.
"""

from __future__ import annotations

import collections
import re
import sys
import time
from pathlib import Path
from typing import TextIO

EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_][\w]*\.)*([A-Za-z_]\w*(?:Error|Exception)): (.*)$")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
# kfp.local's own lines (kfp/local/task_dispatcher.py): "Executing task 'train-component'"
# and "Task 'train-component' finished with status SUCCESS".
STARTED = re.compile(r"Executing task '?(?P<task>[\w.-]+?)'?\s*$")
ENDED = re.compile(r"Task '?(?P<task>[\w.-]+?)'? finished with status (?P<status>\w+)")


def step_name(task: str) -> str:
    """`train-component` -> `train`: the step as the pipeline's diagram names it."""
    return task.removesuffix("-component")


class StepLog:
    """A stdout stand-in: the whole output to LOG_PATH (or TARGET when none), a line per
    step to TARGET, and the last lines kept for `step_error`."""

    def __init__(self, target: TextIO | None = None, log_path: str | Path | None = None,
                 keep: int = 400) -> None:  # fmt: skip
        self.target = target or sys.stdout
        self.log_path = Path(log_path) if log_path else None
        self._file = None
        if self.log_path:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.log_path.open("a", encoding="utf-8", errors="replace")
        self.lines: collections.deque[str] = collections.deque(maxlen=keep)
        self._partial = ""
        self._started: dict[str, float] = {}

    def write(self, text: str) -> int:
        if self._file is None:
            self.target.write(text)
        else:
            self._file.write(text)
        self._partial += text
        *complete, self._partial = self._partial.split("\n")
        self.lines.extend(complete)
        if self._file is not None:
            for line in complete:
                self._announce(ANSI.sub("", line))
        return len(text)

    def _announce(self, line: str) -> None:
        if (started := STARTED.search(line)) is not None:
            task = started["task"]
            self._started[task] = time.monotonic()
            self.target.write(f"  {step_name(task):<10} started\n")
        elif (ended := ENDED.search(line)) is not None:
            task, status = ended["task"], ended["status"]
            seconds = time.monotonic() - self._started.pop(task, time.monotonic())
            self.target.write(f"  {step_name(task):<10} {status.lower():<8} {seconds:6.1f} s\n")
        else:
            return
        self.target.flush()

    def flush(self) -> None:
        self.target.flush()
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def step_error(self) -> str | None:
        """'ErrorType: message' of the last exception in the log, or None."""
        lines = [ANSI.sub("", line).rstrip() for line in [*self.lines, self._partial]]
        for index in range(len(lines) - 1, -1, -1):
            stripped = lines[index].lstrip()  # kfp.local indents a step's output
            match = EXCEPTION_LINE.match(stripped)
            if match:
                indent = len(lines[index]) - len(stripped)
                message = [f"{match.group(1)}: {match.group(2)}"]
                for more in lines[index + 1 :]:
                    if not more.strip() or len(more) - len(more.lstrip()) <= indent:
                        break
                    message.append(more[indent:])
                return "\n".join(message)
        return None
