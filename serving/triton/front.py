"""The front plants reach Triton through: it refuses what would crash Triton, unparsed.

The bundled Triton 2.51 dies on a declared shape like [1099511627776, 256, 256, 3] or a
body of 200 000 nested `[` (issue #12). The front reads each body with a size cap (a
Content-Length over it is refused unread), scans JSON nesting depth without recursion,
and checks every declared input `shape` of an infer request against the model's config
(name, dims, 1..max_batch_size) before forwarding; a refusal is a 4xx in Triton's own
`{"error": ...}` form, so tritonclient shows the message.

Plants get an allow-list, matched on the raw path as sent (before any normalisation, so
`/v2/./repository`, `/v2/models/../repository` or `%2F` cannot smuggle a private path
through): health, server and model metadata, model config and infer, for a model name
that follows the variant rule and that Triton knows. The front forwards the path it
matched, never the plant's spelling, and only the bytes it checked. Everything else
(model control, logging, tracing, shared memory, statistics) is refused here and, behind
it, needs the model-control token Triton was started with (serving/triton/server.py). JSON with
a repeated key is refused (the front's parser and Triton's would read different values),
and the bodies held at once are bounded, not only each one. On a cluster the chart's
ingress carries the same caps. The front's own Prometheus series (requests by route,
model and status; latency; bytes held) are on a port of their own (`metrics_port`,
`serve --metrics-port`), never on the plants' port.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from dataclasses import dataclass

import aiohttp
import yarl
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import generate_latest

from anomalyops.serving.metrics import FRONT_HELD_BYTES, observe_front

BINARY_HEADER = "Inference-Header-Content-Length"  # Triton's binary tensor extension
# The plant's routes; NAME follows serving/contract/names.py, so '.', '%' and '/' never match.
_SERVER = re.compile(r"/v2(?:/health/(?:live|ready))?")
_MODEL = re.compile(
    r"/v2/models/(?P<name>[a-z](?:[-a-z0-9]{0,38}[a-z0-9])?)"
    r"(?:/versions/(?P<version>[1-9][0-9]{0,18}))?(?P<action>/ready|/config|/infer)?"
)
_KINDS = {None: "metadata", "/ready": "health", "/config": "config", "/infer": "infer"}
_DIGITS = re.compile(r"[0-9]{1,12}")
_TOKENS = re.compile(rb'\\.|["\[\]{}]', re.DOTALL)  # an escape pair, a quote, a bracket
CONFIG_TTL_S = 2.0  # a deploy may change dims; Triton itself still checks the rest


@dataclass(frozen=True)
class Limits:
    max_body: int = 256 << 20  # bytes after decompression, binary tensors included
    max_json: int = 32 << 20  # bytes of JSON we parse to read shapes (use binary beyond)
    max_depth: int = 32  # nesting of [ and {; a 4-D tensor as nested lists needs ~7
    max_inflight: int = 512 << 20  # body bytes held by all requests at once


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


@dataclass(frozen=True)
class Route:
    """What a plant's request may reach: the canonical PATH to forward and its model."""

    path: str
    model: str | None = None
    infer: bool = False
    kind: str = "metadata"  # the metrics label: health, metadata, config or infer


def route(method: str, raw_path: str) -> Route:
    """The allowed route for METHOD and RAW_PATH (as sent, query string included); Refused."""
    path, _, _ = raw_path.partition("?")
    if method in ("GET", "HEAD") and _SERVER.fullmatch(path):
        return Route(path, kind="metadata" if path == "/v2" else "health")
    match = _MODEL.fullmatch(path)
    if match is not None:
        infer = match["action"] == "/infer"
        if method == ("POST" if infer else "GET") or (method == "HEAD" and not infer):
            kind = _KINDS[match["action"]]
            return Route(path, match["name"], infer, kind)
        raise Refused(405, f"{method} {path} is not allowed: infer takes POST, the rest GET")
    raise Refused(403, f"{path[:200]!r} is not served to plants (health, metadata, config and "
                       "infer of a model only)")  # fmt: skip


def _no_repeats(pairs: list[tuple[str, object]]) -> dict:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        repeated = next(key for key in keys if keys.count(key) > 1)
        raise Refused(400, f"JSON key {repeated[:100]!r} appears twice in one object")
    return dict(pairs)


def parse_header(json_part: bytes) -> object:
    """The request's JSON, refusing a repeated key (Triton reads the first, Python the last)."""
    try:
        return json.loads(json_part, object_pairs_hook=_no_repeats)
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        raise Refused(400, f"request body is not valid JSON: {error}") from None


def check_binary_sizes(header: dict, binary_bytes: int) -> None:
    """Declared binary_data_size values must be non-negative integers adding up to the body."""
    total = 0
    for index, tensor in enumerate(header.get("inputs", [])):
        parameters = tensor.get("parameters", {}) if isinstance(tensor, dict) else {}
        if not isinstance(parameters, dict):
            raise Refused(400, f"inputs[{index}].parameters must be an object")
        size = parameters.get("binary_data_size")
        if size is None:
            continue
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise Refused(400, f"inputs[{index}].parameters.binary_data_size must be a "
                               f"non-negative integer, not {size!r}")  # fmt: skip
        total += size
    if total != binary_bytes:
        raise Refused(400, f"binary_data_size values add up to {total} bytes but the body "
                           f"carries {binary_bytes} after the JSON header")  # fmt: skip


async def _metrics(_request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE})


def _refusal(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class Front:
    """`with Front(triton_url, port) as front:` serves on 127.0.0.1:PORT in its own thread."""

    def __init__(self, triton_url: str, port: int, host: str = "127.0.0.1",
                 limits: Limits = Limits(), metrics_port: int | None = None) -> None:  # fmt: skip
        self.target = f"http://{triton_url.removeprefix('http://')}"
        self.host, self.port, self.limits = host, port, limits
        self.metrics_port = metrics_port
        self._configs: dict[str, tuple[float, dict | tuple[int, bytes]]] = {}
        self._inflight = 0  # body bytes held by requests in progress (one event loop)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._metrics_runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"{self.host}:{self.port}"

    async def _read(self, request: web.Request, held: list[int]) -> bytes:
        """The body, inflated, refused as soon as it passes max_body or the shared budget.

        HELD[0] counts this request's bytes in the front-wide total; the caller releases it.
        """
        limit = self.limits.max_body
        if request.content_length is not None and request.content_length > limit:
            raise Refused(413, f"body of {request.content_length} bytes exceeds {limit}")
        chunks, size = [], 0
        # aiohttp inflates gzip/deflate bodies as they stream: the caps count inflated bytes.
        async for chunk in request.content.iter_chunked(1 << 20):
            size += len(chunk)
            if size > limit:
                raise Refused(413, f"body exceeds {limit} bytes")
            if self._inflight + len(chunk) > self.limits.max_inflight:
                held_now, budget = self._inflight, self.limits.max_inflight
                raise Refused(503, f"the front holds {held_now} bytes of other requests "
                                   f"(at most {budget}); retry shortly")  # fmt: skip
            self._inflight += len(chunk)
            held[0] += len(chunk)
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
            try:
                message = json.loads(body).get("error")
            except (ValueError, AttributeError):
                message = None
            raise Refused(status, message or f"model {name!r} unavailable")
        return cached[1]

    async def _check_infer(self, request: web.Request, body: bytes, model: str) -> None:
        header_size = request.headers.get(BINARY_HEADER)
        if header_size is not None and not (_DIGITS.fullmatch(header_size)
                                            and int(header_size) <= len(body)):  # fmt: skip
            raise Refused(400, f"{BINARY_HEADER} must be a decimal byte count within the body "
                               f"({len(body)} bytes), not {header_size[:40]!r}")  # fmt: skip
        json_part = body[: int(header_size)] if header_size is not None else body
        if too_deep(json_part, self.limits.max_depth):
            raise Refused(400, f"JSON nested deeper than {self.limits.max_depth} levels")
        if len(json_part) > self.limits.max_json:
            raise Refused(413, f"JSON part of {len(json_part)} bytes exceeds "
                               f"{self.limits.max_json}; send tensors as binary data")  # fmt: skip
        header = parse_header(json_part)
        check_shapes(header, await self._config(model), model)
        check_binary_sizes(header, len(body) - len(json_part))

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        started, held = time.monotonic(), [0]
        kind, known, answer = "refused", None, None
        try:
            allowed = route(request.method, request.raw_path)
            kind = allowed.kind
            if allowed.model is not None:
                await self._config(allowed.model)  # a model Triton knows, or its own error
                known = allowed.model
            body = b""
            if allowed.infer:
                body = await self._read(request, held) if request.can_read_body else b""
                FRONT_HELD_BYTES.set(self._inflight)
                await self._check_infer(request, body, allowed.model)
            answer = await self._forward(request, allowed, body)
        except Refused as refused:
            answer = _refusal(refused.status, str(refused))
        except aiohttp.ClientError:
            answer = _refusal(503, "Triton is not answering (restarting?); retry shortly")
        finally:
            self._inflight -= held[0]
            FRONT_HELD_BYTES.set(self._inflight)
            status = answer.status if answer is not None else 500
            observe_front(kind, known, status, time.monotonic() - started)
        return answer

    async def _forward(self, request: web.Request, allowed: Route, body: bytes) -> web.Response:
        """Send the checked BODY to the matched path: the plant's own spelling never travels."""
        headers = {"Content-Type": request.headers.get("Content-Type", "application/json")}
        if allowed.infer and BINARY_HEADER in request.headers:
            headers[BINARY_HEADER] = request.headers[BINARY_HEADER]
        # What the plant accepts, else nothing: aiohttp would ask for gzip by default, and
        # Triton compressing every answer cost ~17 ms a 256² request (direct: 14 ms).
        headers["Accept-Encoding"] = request.headers.get("Accept-Encoding", "identity")
        url = yarl.URL(f"{self.target}{allowed.path}", encoded=True)
        async with self._session.request(request.method, url, data=body, headers=headers) as answer:
            payload = await answer.read()
            keep = {k: v for k, v in answer.headers.items()
                    if k in ("Content-Type", "Content-Encoding", BINARY_HEADER)}  # fmt: skip
            return web.Response(body=payload, status=answer.status, headers=keep)

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
        if self.metrics_port is not None:  # its own port: plants never reach the series
            metrics = web.Application()
            metrics.router.add_get("/metrics", _metrics)
            self._metrics_runner = web.AppRunner(metrics, access_log=None)
            await self._metrics_runner.setup()
            await web.TCPSite(self._metrics_runner, self.host, self.metrics_port).start()

    async def _stop(self) -> None:
        for runner in (self._runner, self._metrics_runner):
            if runner is not None:
                await runner.cleanup()
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
