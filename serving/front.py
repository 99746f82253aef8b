"""The front plants reach Triton through: it refuses what would crash Triton, unparsed.

The bundled Triton 2.51 dies on a declared shape like [1099511627776, 256, 256, 3] or a
body of 200 000 nested `[` (issue #12). The front reads each body with a size cap (a
Content-Length over it is refused unread), scans JSON nesting depth without recursion,
and checks every declared input `shape` of an infer request against the model's config
(name, dims, 1..max_batch_size) before forwarding; a refusal is a 4xx in Triton's own
`{"error": ...}` form, so tritonclient shows the message. Model control
(`/v2/repository`, logging, tracing, shared memory) is not exposed to plants: deploy
talks to Triton's own address. On a cluster the chart's ingress carries the same caps.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from dataclasses import dataclass

import aiohttp
from aiohttp import web

BINARY_HEADER = "Inference-Header-Content-Length"  # Triton's binary tensor extension
_INFER = re.compile(r"^/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>\d+))?/infer$")
_PRIVATE = ("/v2/repository", "/v2/logging", "/v2/trace", "/v2/systemsharedmemory",
            "/v2/cudasharedmemory")  # fmt: skip
_TOKENS = re.compile(rb'\\.|["\[\]{}]', re.DOTALL)  # an escape pair, a quote, a bracket
CONFIG_TTL_S = 2.0  # a deploy may change dims; Triton itself still checks the rest


@dataclass(frozen=True)
class Limits:
    max_body: int = 256 << 20  # bytes after decompression, binary tensors included
    max_json: int = 32 << 20  # bytes of JSON we parse to read shapes (use binary beyond)
    max_depth: int = 32  # nesting of [ and {; a 4-D tensor as nested lists needs ~7


class Refused(Exception):
    """A request the front answers itself, with STATUS and a one-line message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def too_deep(data: bytes, limit: int) -> bool:
    """Whether JSON DATA nests [ / { deeper than LIMIT (strings and escapes skipped)."""
    depth, in_string = 0, False
    for match in _TOKENS.finditer(data):
        token = match.group()
        if len(token) == 2:  # backslash escape: only meaningful inside a string
            continue
        if token == b'"':
            in_string = not in_string
        elif not in_string:
            depth += 1 if token in (b"[", b"{") else -1
            if depth > limit:
                return True
    return False


def check_shapes(header: object, config: dict, model: str) -> None:
    """Every declared input must be one of the model's, with its dims and a batch it takes."""
    inputs = header.get("inputs") if isinstance(header, dict) else None
    if not isinstance(inputs, list):
        raise Refused(400, "request must be a JSON object with an 'inputs' list")
    expected = {spec["name"]: [int(d) for d in spec.get("dims", [])] for spec in config["input"]}
    max_batch = int(config.get("max_batch_size", 0))
    for index, tensor in enumerate(inputs):
        name = tensor.get("name") if isinstance(tensor, dict) else None
        if name not in expected:
            raise Refused(400, f"inputs[{index}].name {name!r}: model {model!r} takes "
                               f"{sorted(expected)}")  # fmt: skip
        shape, dims = tensor.get("shape"), expected[name]
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
        ):
            raise Refused(400, f"inputs[{index}].shape must be a list of non-negative integers")
        batch, rest = (shape[:1], shape[1:]) if max_batch > 0 else ([1], shape)
        fits = len(rest) == len(dims) and all(d in (-1, s) for s, d in zip(rest, dims, strict=True))
        if not (fits and batch and 1 <= batch[0] <= max(max_batch, 1)):
            takes = f"[1..{max_batch}] + {dims}" if max_batch > 0 else f"{dims}"
            raise Refused(400, f"inputs[{index}].shape {shape}: model {model!r} takes {takes}")


def _refusal(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class Front:
    """`with Front(triton_url, port) as front:` serves on 127.0.0.1:PORT in its own thread."""

    def __init__(self, triton_url: str, port: int, host: str = "127.0.0.1",
                 limits: Limits = Limits()) -> None:  # fmt: skip
        self.target = f"http://{triton_url.removeprefix('http://')}"
        self.host, self.port, self.limits = host, port, limits
        self._configs: dict[str, tuple[float, dict | web.Response]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"{self.host}:{self.port}"

    async def _read(self, request: web.Request) -> bytes:
        """The body, inflated, refused as soon as it passes max_body."""
        limit = self.limits.max_body
        if request.content_length is not None and request.content_length > limit:
            raise Refused(413, f"body of {request.content_length} bytes exceeds {limit}")
        chunks, size = [], 0
        # aiohttp inflates gzip/deflate bodies as they stream: the cap counts inflated bytes.
        async for chunk in request.content.iter_chunked(1 << 20):
            size += len(chunk)
            if size > limit:
                raise Refused(413, f"body exceeds {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def _config(self, name: str) -> dict:
        """The model's config from Triton (cached briefly); Triton's own error if it has none."""
        cached = self._configs.get(name)
        if cached is None or time.monotonic() - cached[0] > CONFIG_TTL_S:
            async with self._session.get(f"{self.target}/v2/models/{name}/config") as answer:
                body = await answer.read()
                value = json.loads(body) if answer.status == 200 else (answer.status, body)
            cached = (time.monotonic(), value)
            self._configs[name] = cached
        if isinstance(cached[1], tuple):
            status, body = cached[1]
            raise Refused(status, json.loads(body).get("error", f"model {name!r} unavailable"))
        return cached[1]

    async def _check(self, request: web.Request, body: bytes) -> None:
        header_size = request.headers.get(BINARY_HEADER)
        try:
            json_part = body[: int(header_size)] if header_size else body
        except ValueError:
            raise Refused(400, f"{BINARY_HEADER} must be an integer") from None
        if too_deep(json_part, self.limits.max_depth):
            raise Refused(400, f"JSON nested deeper than {self.limits.max_depth} levels")
        infer = _INFER.match(request.path)
        if infer is None:
            return
        if len(json_part) > self.limits.max_json:
            raise Refused(413, f"JSON part of {len(json_part)} bytes exceeds "
                               f"{self.limits.max_json}; send tensors as binary data")  # fmt: skip
        try:
            header = json.loads(json_part)
        except (ValueError, UnicodeDecodeError) as error:
            raise Refused(400, f"request body is not valid JSON: {error}") from None
        check_shapes(header, await self._config(infer["name"]), infer["name"])

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.path.startswith(_PRIVATE):
            return _refusal(403, f"{request.path} is not served to plants")
        try:
            body = await self._read(request) if request.can_read_body else b""
            if body:
                await self._check(request, body)
        except Refused as refused:
            return _refusal(refused.status, str(refused))
        headers = {k: v for k, v in request.headers.items()
                   if k in ("Content-Type", BINARY_HEADER)}  # fmt: skip
        # What the plant accepts, else nothing: aiohttp would ask for gzip by default, and
        # Triton compressing every answer cost ~17 ms a 256² request (direct: 14 ms).
        headers["Accept-Encoding"] = request.headers.get("Accept-Encoding", "identity")
        try:
            async with self._session.request(
                request.method, f"{self.target}{request.path_qs}", data=body, headers=headers
            ) as answer:
                payload = await answer.read()
                keep = {k: v for k, v in answer.headers.items()
                        if k in ("Content-Type", "Content-Encoding", BINARY_HEADER)}  # fmt: skip
                return web.Response(body=payload, status=answer.status, headers=keep)
        except aiohttp.ClientError:
            return _refusal(503, "Triton is not answering (restarting?); retry shortly")

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=600),
            connector=aiohttp.TCPConnector(limit=256),
            auto_decompress=False,  # answers pass through as Triton encoded them
        )
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def start(self) -> Front:
        started: dict[str, BaseException | None] = {}
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            try:
                self._loop.run_until_complete(self._start())
                started["error"] = None
            except BaseException as error:  # reported to start()'s caller
                started["error"] = error
                ready.set()
                self._loop.run_until_complete(self._stop())
                return
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._stop())

        self._thread = threading.Thread(target=run, name="anomalyops-front", daemon=True)
        self._thread.start()
        ready.wait()
        if started["error"] is not None:
            raise started["error"]
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)

    def __enter__(self) -> Front:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
