"""Where a trained model is written: checked before any work, replaced whole or not at all.

Training takes minutes; finding out afterwards that `--out` is a file, read-only, or
another model's folder loses that work, and writing in place leaves half a model on a
full disk. So `ModelOutput` checks the target first, builds the model in a hidden sibling
folder (same file system, so the final rename is atomic), and only then swaps it in. A
folder that already holds a model is replaced only with `force`, and then as a whole:
none of the old model's files (metrics.json, report.html) survive beside the new one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

MODEL_MARKERS = ("detector.json", "detector.safetensors", "thresholds.json")


class OutputError(ValueError):
    """The output path cannot take a model; the message names the path and why."""


def check_writable_file(path: str | Path, what: str) -> Path:
    """PATH can be written as a file (not a folder; its folder exists and is writable)."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{what} {path} is a directory; give a file path")
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputError(f"{what} {path} is not writable")
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"{what} {path}: cannot create {folder} ({error.strerror})") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"{what} {path}: folder {folder} is not writable")
    return path


class ModelOutput:
    """`with ModelOutput(out, force) as staging:` write into STAGING; renamed to OUT on success."""

    def __init__(self, target: str | Path, force: bool = False) -> None:
        self.target = Path(target).absolute()
        self.force = force
        self.staging: Path | None = None
        self.check()

    def check(self) -> None:
        target = self.target
        if target.exists() and not target.is_dir():
            raise OutputError(f"--out {target} exists and is not a directory")
        if target.is_dir() and any(target.iterdir()) and not self.force:
            holds = (
                "holds a model"
                if any((target / m).exists() for m in MODEL_MARKERS)
                else ("is not empty")
            )
            raise OutputError(f"--out {target} {holds}; pass --force to replace it")
        parent = target.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise OutputError(
                f"--out {target}: cannot create {parent} ({error.strerror})"
            ) from None
        try:  # a real write, not os.access: root, read-only mounts and ACLs all show here
            os.rmdir(tempfile.mkdtemp(prefix=f".{target.name}.probe-", dir=parent))
        except OSError as error:
            raise OutputError(f"--out {target}: folder {parent} is not writable "
                              f"({error.strerror or error})") from None  # fmt: skip

    def __enter__(self) -> Path:
        try:
            self.staging = Path(
                tempfile.mkdtemp(prefix=f".{self.target.name}.", dir=self.target.parent)
            )
        except OSError as error:
            raise OutputError(f"--out {self.target}: cannot write beside it ({error})") from None
        return self.staging

    def __exit__(self, kind: type | None, error: BaseException | None, _tb: object) -> None:
        staging, self.staging = self.staging, None
        if kind is not None:
            shutil.rmtree(staging, ignore_errors=True)
            if isinstance(error, OSError) and not isinstance(error, OutputError):
                raise OutputError(
                    f"--out {self.target}: writing the model failed ({error.strerror or error}); "
                    "nothing was changed there"
                ) from error
            return
        self._swap_in(staging)

    def _swap_in(self, staging: Path) -> None:
        """Rename STAGING to the target; an old folder is moved aside first, then removed."""
        old = None
        try:
            if self.target.exists():
                self.check()  # it may have changed during training
                old = self.target.with_name(f".{self.target.name}.old-{os.getpid()}")
                os.rename(self.target, old)
            os.rename(staging, self.target)
        except BaseException:
            if old is not None and not self.target.exists():
                with contextlib.suppress(OSError):
                    os.rename(old, self.target)
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
