"""The header naming a reviewer comes only from the cluster's authentication: the chart
asks ingress-nginx to set it from the auth server's answer, and the platform's controller
values strip it from every outside request."""

from __future__ import annotations

import yaml
from chart_values import REPO

RESPONSE_HEADERS = "nginx.ingress.kubernetes.io/auth-response-headers"
AUTH_URL = "nginx.ingress.kubernetes.io/auth-url"
AUTH = ("--set-json", f'ingress.annotations={{"{AUTH_URL}": "https://a/auth"}}')


def ingresses(objects: list[dict]) -> dict[str, dict]:
    return {o["metadata"]["name"]: o["metadata"]["annotations"] for o in objects
            if o["kind"] == "Ingress"}  # fmt: skip


def test_with_auth_the_reviewer_header_is_the_auth_servers_answer(render):
    found = ingresses(render("gpu"))  # auth-url set in this value set
    assert found
    for name, notes in found.items():
        assert notes[RESPONSE_HEADERS] == "X-Forwarded-User", name
    review = next(a for n, a in found.items() if n.endswith("-review"))
    assert review["nginx.ingress.kubernetes.io/rewrite-target"] == "/$2"  # the chart's own


def test_headers_the_user_lists_are_kept_and_the_reviewer_header_added(render):
    theirs = ("--set-json", f'ingress.annotations={{"{AUTH_URL}": "https://a/auth", '
              f'"{RESPONSE_HEADERS}": "X-Auth-Request-User, X-Auth-Request-Email"}}',
              "--set", "review.userHeader=x-auth-request-user")  # fmt: skip
    for notes in ingresses(render("cpu", *theirs)).values():
        assert notes[RESPONSE_HEADERS] == "X-Auth-Request-User,X-Auth-Request-Email"  # no repeat
    objects = render("cpu", *AUTH, "--set", "review.userHeader=X-Remote-User")
    for notes in ingresses(objects).values():
        assert notes[RESPONSE_HEADERS] == "X-Remote-User"
    (review,) = [o for o in objects if o["kind"] == "Deployment"
                 and o["metadata"]["name"].endswith("-review")]  # fmt: skip
    assert "--user-header=X-Remote-User" in review["spec"]["template"]["spec"]["containers"][0][
        "args"]  # fmt: skip


def test_without_auth_the_chart_adds_nothing_and_the_controller_strips(render):
    for notes in ingresses(render("cpu")).values():
        assert RESPONSE_HEADERS not in notes
    values = yaml.safe_load((REPO / "platform" / "values" / "ingress-nginx.yaml").read_text())
    controller = values["controller"]
    stripped = {k.lower(): v for k, v in controller["proxySetHeaders"].items()}
    assert stripped["x-forwarded-user"] == ""  # nginx passes no empty header
    chart = yaml.safe_load((REPO / "charts" / "anomalyops" / "values.yaml").read_text())
    assert chart["review"]["userHeader"].lower() in stripped
    assert controller["config"]["allow-snippet-annotations"] == "false"
