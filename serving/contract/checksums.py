"""sha256 of files: how a model file proves it is the one its JSON describes.

Serving checks model.onnx against model.json before it deploys it; training records
weights' checksums at save. Both use this one function (components/hashing re-exports it).
"""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, read in blocks (weights and banks can be gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ChecksumError(ValueError):
    """A file's bytes do not match the checksum recorded for it; the message names both."""


def verify_sha256(path: str | Path, expected: str | None, recorded_in: str | Path) -> None:
    """Raise ChecksumError unless PATH's sha256 is EXPECTED (as recorded in RECORDED_IN)."""
    if not expected:
        raise ChecksumError(f"{recorded_in}: records no sha256 for {Path(path).name}")
    actual = file_sha256(path)
    if actual != expected:
        raise ChecksumError(
            f"{path}: sha256 {actual[:12]}… does not match {expected[:12]}… recorded in "
            f"{recorded_in}; the file was changed or damaged after it was written"
        )
