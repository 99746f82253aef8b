"""Where models and reports are written: checked before any work, replaced whole or not at all.

Training takes minutes; finding out afterwards that `--out` is a file, read-only, or
another model's folder loses that work, and writing in place leaves half a model on a
full disk. So every writer (fit, adapt, export, evaluate's metrics and report) goes
through this module: `ModelOutput` checks the target folder first, builds the model in
a hidden sibling folder (same file system, so the final rename is atomic) and only then
swaps it in; `staged_file` does the same for one file. `--force` replaces only a folder
that holds a model of the same kind (by its files) and nothing else, never one that
contains or lies inside the data being read, and then as a whole: none of the old
model's files (metrics.json, report.html) survive beside the new one. A failed write
(a full disk) names the path and leaves what was there untouched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

ModelKind = Literal["trained", "exported"]
# What each kind of model folder holds; its first file says which kind a folder is.
MODEL_FILES: dict[str, tuple[str, ...]] = {
    "trained": ("detector.json", "detector.safetensors", "thresholds.json", "training.json",
                "reference.json", "adaptation.json"),
    "exported": ("model.json", "model.onnx", "model.onnx.data", "reference.json"),
}  # fmt: skip
# Written into a model folder by `evaluate` (by default): part of the model's folder.
BESIDE_MODEL = ("metrics.json", "report.html")


class OutputError(ValueError):
    """The output path cannot take a model; the message names the path and why."""


def model_kind(folder: str | Path) -> ModelKind | None:
    """ "trained" or "exported" when FOLDER holds such a model (by its files), else None."""
    folder = Path(folder)
    for kind, files in MODEL_FILES.items():
        if (folder / files[0]).is_file():
            return kind  # type: ignore[return-value]
    return None


def overlapping(target: Path, protected: Iterable[str | Path]) -> Path | None:
    """The first PROTECTED folder that TARGET is, contains or lies inside (URIs ignored)."""
    target = target.resolve()
    for path in protected:
        if "://" in str(path):
            continue
        path = Path(path).resolve()
        if target == path or path in target.parents or target in path.parents:
            return path
    return None


def check_writable_file(path: str | Path, what: str) -> Path:
    """PATH can be written as a file: not a folder, not a model's own file, folder writable."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{what} {path} is a directory; give a file path")
    kind = model_kind(path.parent)
    if kind is not None and path.name in MODEL_FILES[kind]:
        raise OutputError(
            f"{what} {path} is a file of the {kind} model in {path.parent}; give another path"
        )
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


@contextlib.contextmanager
def staged_file(path: str | Path, what: str) -> Iterator[Path]:
    """`with staged_file(p, "--report") as tmp:` write TMP; renamed onto P only on success."""
    path = check_writable_file(path, what)
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as error:
        raise OutputError(f"{what} {path}: cannot write beside it ({error.strerror})") from None
    os.close(fd)
    staging = Path(name)
    try:
        yield staging
        os.chmod(staging, (path.stat().st_mode & 0o7777) if path.exists() else 0o644)
        os.replace(staging, path)
    except BaseException as error:
        staging.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise OutputError(f"{what} {path}: writing failed ({error.strerror or error}); "
                              "nothing was changed there") from error  # fmt: skip
        raise


def write_file(path: str | Path, content: str | bytes, what: str) -> Path:
    """CONTENT written to PATH whole or not at all (through `staged_file`)."""
    with staged_file(path, what) as staging:
        if isinstance(content, str):
            staging.write_text(content)
        else:
            staging.write_bytes(content)
    return Path(path)


class ModelOutput:
    """`with ModelOutput(out, force) as staging:` write into STAGING; renamed to OUT on success.

    KIND is the model this writer makes; `--force` replaces only a folder holding that
    kind of model and none of anything else. PROTECT lists folders (the data, the base
    model) that the target may not be, contain or lie inside, even with `force`.
    """

    def __init__(
        self,
        target: str | Path,
        force: bool = False,
        protect: Iterable[str | Path] = (),
        kind: ModelKind = "trained",
        flag: str = "--out",
    ) -> None:
        self.target = Path(target).absolute()
        self.force, self.kind, self.flag = force, kind, flag
        self.protect = tuple(protect)
        self.staging: Path | None = None
        self.check()

    def check(self) -> None:
        target, flag = self.target, self.flag
        if target.exists() and not target.is_dir():
            raise OutputError(f"{flag} {target} exists and is not a directory")
        inside = overlapping(target, self.protect)
        if inside is not None:
            raise OutputError(f"{flag} {target} is, contains or lies inside {inside}, which is "
                              "being read; choose a folder outside it")  # fmt: skip
        if target.is_dir() and any(target.iterdir()):
            self._check_replaceable(target)
        parent = target.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise OutputError(
                f"{flag} {target}: cannot create {parent} ({error.strerror})"
            ) from None
        try:  # a real write, not os.access: root, read-only mounts and ACLs all show here
            os.rmdir(tempfile.mkdtemp(prefix=f".{target.name}.probe-", dir=parent))
        except OSError as error:
            raise OutputError(f"{flag} {target}: folder {parent} is not writable "
                              f"({error.strerror or error})") from None  # fmt: skip

    def _check_replaceable(self, target: Path) -> None:
        """A non-empty TARGET: only a model of this kind, and only with force."""
        kind, flag = model_kind(target), self.flag
        if kind is None:
            raise OutputError(f"{flag} {target} is not empty and holds no model; "
                              "give a new or empty folder")  # fmt: skip
        if kind != self.kind:
            raise OutputError(f"{flag} {target} holds a {kind} model; give another folder")
        if not self.force:
            raise OutputError(f"{flag} {target} holds a model; pass --force to replace it")
        own = set(MODEL_FILES[kind]) | set(BESIDE_MODEL)
        foreign = sorted(p.name for p in target.iterdir() if p.name not in own or p.is_dir())
        if foreign:
            raise OutputError(f"{flag} {target} holds a model and other files "
                              f"({', '.join(foreign[:5])}); --force replaces a model's own "
                              "files only: move those first")  # fmt: skip

    def __enter__(self) -> Path:
        try:
            self.staging = Path(
                tempfile.mkdtemp(prefix=f".{self.target.name}.", dir=self.target.parent)
            )
        except OSError as error:
            raise OutputError(
                f"{self.flag} {self.target}: cannot write beside it ({error})"
            ) from None
        return self.staging

    def __exit__(self, kind: type | None, error: BaseException | None, _tb: object) -> None:
        staging, self.staging = self.staging, None
        if kind is not None:
            shutil.rmtree(staging, ignore_errors=True)
            if isinstance(error, OSError) and not isinstance(error, OutputError):
                raise OutputError(
                    f"{self.flag} {self.target}: writing the model failed "
                    f"({error.strerror or error}); nothing was changed there"
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
