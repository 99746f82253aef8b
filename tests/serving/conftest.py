"""Serving fixtures: a PatchCore trained and exported on real weld data, a real Triton."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def weld_export(weld, tmp_path_factory):
    """model.onnx + model.json of a small PatchCore fitted on weld train/good."""
    from anomalyops.components.export import export
    from anomalyops.components.train import train

    root = tmp_path_factory.mktemp("weld_model")
    train(weld, root / "trained", "patchcore", {"coreset_ratio": 0.01}, progress=False)
    export(root / "trained", root / "export")
    return root / "export"


@pytest.fixture(scope="session")
def python_repository(weld_export, tmp_path_factory):
    """Two product variants in one python-flavour repository."""
    from anomalyops.serving.repository import build_repository

    repo = tmp_path_factory.mktemp("triton") / "repository"
    return build_repository(repo, {"weld": weld_export, "weld-line2": weld_export}, "python")


@pytest.fixture(scope="session")
def triton(python_repository, triton_server):
    with triton_server(python_repository) as server:
        yield server


@pytest.fixture(scope="session")
def png16():
    """`png16(width, height)`: a 16-bit grey PNG written row by row, so a test can make an
    8000x8000 one (128 MB of pixels, ~100 KB of file) without holding its pixels."""
    import struct
    import zlib

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    def make(width: int, height: int, value: int = 30000) -> bytes:
        row = b"\0" + value.to_bytes(2, "big") * width
        packer = zlib.compressobj(9)
        data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
        header = struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0)  # 16-bit grey
        return b"".join([b"\x89PNG\r\n\x1a\n", chunk(b"IHDR", header), chunk(b"IDAT", data),
                         chunk(b"IEND", b"")])  # fmt: skip

    return make
