"""sha256 identities of files and folders: what a model, a dataset or an export *is*."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from anomalyops.serving.contract.checksums import file_sha256

__all__ = ["file_sha256", "files_sha256"]


def files_sha256(root: Path, paths: Iterable[Path]) -> str:
    """sha256 over each file's path relative to `root` and its bytes, in the order given."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(os.fsencode(path.relative_to(root).as_posix()))  # any name's bytes
        digest.update(bytes.fromhex(file_sha256(path)))
    return digest.hexdigest()
