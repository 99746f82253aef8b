"""Serving fixtures: a PatchCore trained and exported on real weld data, a real Triton."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import pytest


@contextlib.contextmanager
def _serve(app, **config) -> Iterator[str]:
    import uvicorn

    from anomalyops.serving.ports import free_port

    port = free_port()
    settings = {"host": "127.0.0.1", "port": port, "log_level": "warning", **config}
    server = uvicorn.Server(uvicorn.Config(app, **settings))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"uvicorn did not start on port {port}")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="session")
def web_server():
    """`with web_server(app, **uvicorn_config) as url:` serves an app with the real uvicorn."""
    return _serve


@pytest.fixture(scope="session")
def weld_export(weld, tmp_path_factory):
    """model.onnx + model.json of a small PatchCore fitted on weld train/good."""
    from anomalyops.components.deploy.export import export
    from anomalyops.components.training.train import train

    root = tmp_path_factory.mktemp("weld_model")
    train(weld, root / "trained", "patchcore", {"coreset_ratio": 0.01}, progress=False)
    export(root / "trained", root / "export")
    return root / "export"


@pytest.fixture(scope="session")
def python_repository(weld_export, tmp_path_factory):
    """Two product variants in one python-flavour repository."""
    from anomalyops.serving.triton.repository import build_repository

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
