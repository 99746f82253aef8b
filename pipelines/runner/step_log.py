"""What a failed kfp.local step said: its own error, not just "Inner task failed".

kfp.local prints each step's output to stdout and then raises a RuntimeError naming
only the task. `StepLog` copies stdout through (the user still sees everything) and
keeps the tail, from which `step_error` takes the last exception the step raised,
with the lines that continue its message (file lists of a validation failure, say).
"""

from __future__ import annotations

import collections
import re
import sys
from typing import TextIO

EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_][\w]*\.)*([A-Za-z_]\w*(?:Error|Exception)): (.*)$")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


class StepLog:
    """A stdout stand-in that writes through and remembers the last lines."""

    def __init__(self, target: TextIO | None = None, keep: int = 400) -> None:
        self.target = target or sys.stdout
        self.lines: collections.deque[str] = collections.deque(maxlen=keep)
        self._partial = ""

    def write(self, text: str) -> int:
        self.target.write(text)
        self._partial += text
        *complete, self._partial = self._partial.split("\n")
        self.lines.extend(complete)
        return len(text)

    def flush(self) -> None:
        self.target.flush()

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
