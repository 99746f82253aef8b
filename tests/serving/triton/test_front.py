"""The front before the real Triton: the requests that crash Triton 2.51 get a 4xx, and
Triton keeps answering; good requests (binary tensors, gzip) pass unchanged."""

import gzip
import http.client
import json

import httpx
import numpy as np
import pytest
import tritonclient.http as triton_http
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException

from anomalyops.serving.ports import free_port
from anomalyops.serving.triton.front import (
    Front,
    Limits,
    Refused,
    check_shapes,
    parse_header,
    route,
    too_deep,
)
from anomalyops.serving.triton.server import CONTROL_HEADER, control_headers

CONFIG = {"max_batch_size": 4, "input": [{"name": "image", "dims": ["8", "8", "3"]}]}


def test_depth_scan_skips_strings_and_escapes():
    assert not too_deep(b'{"a": [[1, 2], [3]]}', 3)
    assert too_deep(b'{"a": [[[1]]]}', 3)
    assert not too_deep(b'{"a": "[[[[[[\\"[[[["}', 1)  # brackets inside a string
    assert too_deep(b"[" * 200_000, 32)


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ([1099511627776, 8, 8, 3], "takes [1..4] + [8, 8, 3]"),
        ([0, 8, 8, 3], "takes"),
        ([1, 8, 8], "takes"),
        ([1, 8, 9, 3], "takes"),
        ([1, 8, 8, -3], "non-negative integers"),
        ([1, 8, 8, True], "non-negative integers"),
    ],
)
def test_declared_shapes_are_checked_against_the_config(shape, message):
    with pytest.raises(Refused, match=message.replace("[", r"\[").replace("+", r"\+")):
        check_shapes({"inputs": [{"name": "image", "shape": shape}]}, CONFIG, "weld")
    check_shapes({"inputs": [{"name": "image", "shape": [4, 8, 8, 3]}]}, CONFIG, "weld")
    with pytest.raises(Refused, match="'mask'"):
        check_shapes({"inputs": [{"name": "mask", "shape": [1, 8, 8, 3]}]}, CONFIG, "weld")


# Every spelling the hostile probe used to reach model control through the plant port.
TRAVERSALS = [
    ("POST", "/v2/repository/models/weld/unload"),
    ("POST", "/v2/./repository/models/weld/unload"),
    ("POST", "/v2/models/../repository/models/weld/unload"),
    ("POST", "/v2/./repository/index"),
    ("POST", "/v2/models/../logging"),
    ("POST", "/v2//repository/models/weld/load"),
    ("POST", "/v2/models/weld/../../repository/models/weld/unload"),
    ("POST", "/v2/models/x/../weld/infer"),
    ("POST", "/v2/./models/weld/infer"),
    ("POST", "/v2/models/weld%2F..%2F..%2Frepository/index"),
    ("POST", "/v2/%72epository/index"),
    ("GET", "/v2/models/weld%3Fx"),
    ("GET", "/v2/trace/setting"),
    ("POST", "/v2/systemsharedmemory/region/x/register"),
    ("GET", "/v2/models/weld/stats"),
    ("GET", "/metrics"),
]


@pytest.mark.parametrize(("method", "path"), TRAVERSALS)
def test_only_the_allow_list_routes(method, path):
    with pytest.raises(Refused) as refused:
        route(method, path)
    assert refused.value.status in (403, 405)


@pytest.mark.parametrize(
    ("method", "path", "kind"),
    [("GET", "/v2", "metadata"), ("GET", "/v2/health/ready", "health"),
     ("GET", "/v2/models/weld/versions/2/ready", "health"), ("GET", "/v2/models/weld", "metadata"),
     ("GET", "/v2/models/config", "metadata"), ("GET", "/v2/models/weld/config", "config"),
     ("POST", "/v2/models/weld/infer", "infer")],
)  # fmt: skip
def test_each_route_has_its_metrics_kind(method, path, kind):
    """From the match, not the spelling: a model named `config` is metadata, not config."""
    assert route(method, path).kind == kind


def test_allowed_routes_forward_their_canonical_path():
    assert route("GET", "/v2/health/ready").path == "/v2/health/ready"
    infer = route("POST", "/v2/models/weld/versions/3/infer?x=1")
    expected = ("/v2/models/weld/versions/3/infer", "weld", True)
    assert (infer.path, infer.model, infer.infer) == expected
    assert route("GET", "/v2/models/weld-line2/config").model == "weld-line2"
    with pytest.raises(Refused, match="POST"):
        route("GET", "/v2/models/weld/infer")
    with pytest.raises(Refused, match="GET"):
        route("POST", "/v2/models/weld/config")


def test_repeated_json_keys_are_refused():
    with pytest.raises(Refused, match="'shape' appears twice"):
        parse_header(
            b'{"inputs":[{"name":"image","shape":[1099511627776,8,8,3],"shape":[1,8,8,3]}]}'
        )
    assert parse_header(b'{"inputs": []}') == {"inputs": []}


def _raw(url: str, method: str, path: str, body: bytes = b"", headers=None) -> tuple[int, bytes]:
    """One request with PATH sent exactly as written (http.client does not normalise)."""
    host, port = url.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


@pytest.fixture(scope="module")
def front(triton):
    with Front(triton.url, free_port(), limits=Limits(max_body=8 << 20),
               metrics_port=free_port()) as running:  # fmt: skip
        yield running


def _alive(triton) -> bool:
    ready = httpx.get(f"http://{triton.url}/v2/models/weld/ready", timeout=10)
    return triton.process.poll() is None and ready.status_code == 200


def test_crash_requests_are_refused_and_triton_keeps_answering(triton, front):
    url = f"http://{front.url}/v2/models/weld/infer"
    huge = {"inputs": [{"name": "image", "shape": [1099511627776, 256, 256, 3],
                        "datatype": "UINT8", "data": [0]}]}  # fmt: skip
    answer = httpx.post(url, json=huge, timeout=10)
    assert answer.status_code == 400 and "1099511627776" in answer.json()["error"]
    assert _alive(triton)
    nested = httpx.post(url, content=b"[" * 200_000, timeout=10)
    assert nested.status_code == 400 and "nested deeper than 32" in nested.json()["error"]
    assert _alive(triton)
    big = httpx.post(url, content=b"0" * (9 << 20), timeout=30)
    assert big.status_code == 413 and "exceeds" in big.json()["error"]
    bomb = gzip.compress(b" " * (64 << 20))  # 64 MiB of nothing, 64 KiB on the wire
    inflated = httpx.post(url, content=bomb, headers={"Content-Encoding": "gzip"}, timeout=30)
    assert inflated.status_code == 413
    control = httpx.post(f"http://{front.url}/v2/repository/models/weld/unload", timeout=10)
    assert control.status_code == 403
    unknown = httpx.post(f"http://{front.url}/v2/models/no_such_line/infer", json=huge)
    assert 400 <= unknown.status_code < 500 and "no_such_line" in unknown.json()["error"]
    assert _alive(triton)


def test_good_requests_pass_unchanged(triton, front, weld):
    from anomalyops.serving.images.decode import load_image

    image = load_image(sorted((weld / "test" / "good").glob("*"))[0], (256, 256))[None]
    scores = {}
    for name, url in (("direct", triton.url), ("front", front.url)):
        client = triton_http.InferenceServerClient(url)
        tensor = triton_http.InferInput("image", list(image.shape), "UINT8")
        tensor.set_data_from_numpy(image)  # binary tensor extension
        scores[name] = client.infer("weld", [tensor], request_compression_algorithm="gzip",
                                    response_compression_algorithm="gzip")  # fmt: skip
        client.close()
    front_score, direct_score = (scores[k].as_numpy("score") for k in ("front", "direct"))
    np.testing.assert_array_equal(front_score, direct_score)
    assert scores["front"].get_response()["model_version"] == "1"
    body = {"inputs": [{"name": "image", "shape": list(image.shape), "datatype": "UINT8",
                        "data": image.ravel().tolist()}]}  # fmt: skip
    as_json = httpx.post(f"http://{front.url}/v2/models/weld/infer", content=json.dumps(body),
                         timeout=60)  # fmt: skip
    assert as_json.status_code == 200
    # Triton compresses only what the plant asked for (httpx asks gzip; the front passes
    # the answer through encoded), never on the front's own account.
    assert as_json.headers["content-encoding"] == "gzip"
    plain = httpx.post(f"http://{front.url}/v2/models/weld/infer", content=json.dumps(body),
                       headers={"Accept-Encoding": "identity"}, timeout=60)  # fmt: skip
    assert "content-encoding" not in plain.headers and plain.json() == as_json.json()
    score = {o["name"]: o["data"] for o in as_json.json()["outputs"]}["score"][0]
    assert score == pytest.approx(float(scores["direct"].as_numpy("score")[0, 0]), rel=1e-6)
    client = triton_http.InferenceServerClient(front.url)
    with pytest.raises(InferenceServerException, match="takes"):
        tensor = triton_http.InferInput("image", [1, 128, 128, 3], "UINT8")
        tensor.set_data_from_numpy(np.zeros((1, 128, 128, 3), np.uint8))
        client.infer("weld", [tensor])
    client.close()


def _front_samples(front) -> dict[tuple[str, tuple], float]:
    """The front's /metrics as Prometheus parses it: {(name, sorted labels): value}."""
    answer = httpx.get(f"http://{front.host}:{front.metrics_port}/metrics", timeout=10)
    assert answer.status_code == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(answer.text)
            for s in family.samples}  # fmt: skip


def test_front_metrics_count_what_it_answered(triton, front, weld):
    from anomalyops.serving.images.decode import load_image

    def count(samples, route, model, code):
        labels = (("code", str(code)), ("model", model), ("route", route))
        return samples.get(("anomalyops_front_requests_total", labels), 0.0)

    before = _front_samples(front)
    image = load_image(sorted((weld / "test" / "good").glob("*"))[0], (256, 256))[None]
    body = {"inputs": [{"name": "image", "shape": list(image.shape), "datatype": "UINT8",
                        "data": image.ravel().tolist()}]}  # fmt: skip
    url = f"http://{front.url}/v2/models/weld/infer"
    assert httpx.post(url, content=json.dumps(body), timeout=60).status_code == 200
    assert _raw(front.url, "POST", "/v2/./repository/models/weld/unload")[0] == 403
    assert httpx.get(f"http://{front.url}/v2/models/no-such-line", timeout=10).status_code >= 400
    after = _front_samples(front)
    assert count(after, "infer", "weld", 200) == count(before, "infer", "weld", 200) + 1
    assert count(after, "refused", "", 403) == count(before, "refused", "", 403) + 1
    # A name Triton does not know gets no series of its own (a plant cannot grow the labels).
    assert not [k for k in after if ("model", "no-such-line") in k[1]]
    assert after[
        ("anomalyops_front_request_duration_seconds_count", (("route", "infer"),))
    ] > before.get(("anomalyops_front_request_duration_seconds_count", (("route", "infer"),)), 0)
    assert after[("anomalyops_front_held_bytes", ())] == 0  # nothing held between requests


def test_model_control_is_out_of_the_plants_reach(triton, front):
    for method, path in TRAVERSALS:
        status, _ = _raw(front.url, method, path)
        assert status in (403, 405), (method, path, status)
        assert _alive(triton), (method, path)
    # Triton itself answers model control only with the token serve wrote, 0600.
    token_file = triton.repository / ".model-control-token"
    assert token_file.stat().st_mode & 0o777 == 0o600
    token = control_headers(triton.repository)
    assert _raw(triton.url, "POST", "/v2/repository/index")[0] == 403
    assert _raw(triton.url, "POST", "/v2/repository/index", headers=token)[0] == 200
    status, _ = _raw(triton.url, "POST", "/v2/repository/index", headers={CONTROL_HEADER: "guess"})
    assert status == 403
    # A plant that sends the header through the front gets nothing: it is not forwarded.
    assert _raw(front.url, "POST", "/v2/repository/index", headers=token)[0] == 403
    assert "--allow-grpc=false" in triton._command_and_env()[0]


def test_smuggled_shapes_and_sizes_are_refused(triton, front):
    huge = (b'{"inputs":[{"name":"image","shape":[1099511627776,256,256,3],'
            b'"shape":[1,256,256,3],"datatype":"UINT8","data":[0]}]}')  # fmt: skip
    status, body = _raw(front.url, "POST", "/v2/models/weld/infer", huge)
    assert status == 400 and b"appears twice" in body
    for path in ("/v2/./models/weld/infer", "/v2/models/x/../weld/infer"):
        assert _raw(front.url, "POST", path, huge)[0] == 403
    tensor = {"name": "image", "shape": [1, 256, 256, 3], "datatype": "UINT8",
              "parameters": {"binary_data_size": -1}}  # fmt: skip
    header = json.dumps({"inputs": [tensor]}).encode()
    status, body = _raw(front.url, "POST", "/v2/models/weld/infer", header + b"\0" * 16,
                        {"Inference-Header-Content-Length": str(len(header))})  # fmt: skip
    assert status == 400 and b"binary_data_size" in body
    status, body = _raw(front.url, "POST", "/v2/models/weld/infer", header,
                        {"Inference-Header-Content-Length": "1_9_2"})  # fmt: skip
    assert status == 400 and b"decimal byte count" in body
    assert _alive(triton)


def test_bodies_held_at_once_are_bounded(triton):
    """One request holds 7 MiB and stalls; a second 7 MiB one would pass the 12 MiB budget."""
    import threading
    import time

    limits = Limits(max_body=8 << 20, max_inflight=12 << 20)
    release, answers = threading.Event(), {}
    with Front(triton.url, free_port(), limits=limits) as small:
        url = f"http://{small.url}/v2/models/weld/infer"

        def stalled():
            yield b" " * (7 << 20)
            release.wait(30)

        holder = threading.Thread(target=lambda: answers.setdefault(
            "first", httpx.post(url, content=stalled(), timeout=60)))  # fmt: skip
        holder.start()
        deadline = time.monotonic() + 30
        while small._inflight < (7 << 20) and time.monotonic() < deadline:
            time.sleep(0.05)
        second = httpx.post(url, content=b" " * (7 << 20), timeout=60)
        release.set()
        holder.join(60)
        assert second.status_code == 503 and "retry" in second.json()["error"]
        assert answers["first"].status_code == 400  # read whole, then refused as not JSON
        assert small._inflight == 0
