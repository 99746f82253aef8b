"""Two releases of the chart in one namespace share no object name, and every name and
label value stays within what Kubernetes and KServe accept (DNS labels and label values of
at most 63 characters, CronJob names of at most 52)."""

from __future__ import annotations

import pytest
import yaml
from chart_values import CHART, VALUE_SETS, values_args

LONG_LINE = "l" * 31  # with release "rel" (fullname rel-anomalyops): a 46-character name


def objects_of(helm, release: str, value_set: str, *extra: str) -> list[dict]:
    args = ["template", release, str(CHART), "--namespace", "plant", *values_args(value_set)]
    result = helm(*args, *extra)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def labels_of(obj: dict) -> list[tuple[str, str]]:
    """Every (where, label value) in OBJ: its own labels and its pod templates'."""
    found = [(f"{obj['kind']} {obj['metadata']['name']}", v)
             for v in obj["metadata"].get("labels", {}).values()]  # fmt: skip
    spec = obj.get("spec", {})
    for template in (spec.get("template"), spec.get("jobTemplate", {}).get("spec", {}).get(
            "template")):  # fmt: skip
        if template:
            found += [(f"{obj['kind']} {obj['metadata']['name']} pod", v)
                      for v in template["metadata"].get("labels", {}).values()]  # fmt: skip
    return found


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_two_releases_in_one_namespace_share_no_name(helm, value_set):
    names = [{(o["kind"], o["metadata"]["name"]) for o in objects_of(helm, release, value_set)}
             for release in ("plant-a", "plant-b")]  # fmt: skip
    assert names[0] and not names[0] & names[1]
    # KServe's own objects are named after the InferenceService: prefixed too.
    isvcs = [n for kind, n in names[0] if kind == "InferenceService"]
    assert all(n.startswith("plant-a-anomalyops-") for n in isvcs)


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_names_and_label_values_stay_within_kubernetes_limits(helm, value_set):
    line = f'[{{"name": "{LONG_LINE}", "variant": "weld", "storageUri": "s3://m/w"}}]'
    objects = objects_of(helm, "rel", value_set, "--set-json", f"lines={line}")
    (isvc,) = [o for o in objects if o["kind"] == "InferenceService"]
    assert len(isvc["metadata"]["name"]) == 46  # the longest the chart accepts
    for obj in objects:
        limit = 52 if obj["kind"] == "CronJob" else 63
        assert len(obj["metadata"]["name"]) <= limit, obj["metadata"]["name"]
        for where, value in labels_of(obj):
            assert len(str(value)) <= 63, where
    # KServe's component names (constants.go): "<isvc>-transformer", a DNS label.
    assert len(f"{isvc['metadata']['name']}-transformer") <= 63


def test_a_name_too_long_is_refused_naming_the_line(helm):
    line = f'[{{"name": "{LONG_LINE}x", "variant": "weld"}}]'
    result = helm("template", "rel", str(CHART), "--set-json", f"lines={line}")
    assert result.returncode != 0
    assert f"lines[{LONG_LINE}x]" in result.stderr and "above 46" in result.stderr


def hosts_of(objects: list[dict]) -> set[str]:
    return {rule["host"] for o in objects if o["kind"] == "Ingress" for rule in o["spec"]["rules"]}


def test_two_releases_or_namespaces_never_claim_one_ingress_host(helm):
    """Ingress hosts are cluster-wide: ingress-nginx refuses a second Ingress for a host."""
    hosts = [hosts_of(objects_of(helm, release, "gpu", "--namespace", namespace))
             for release, namespace in (("plant-a", "plant"), ("plant-b", "plant"),
                                        ("plant-a", "plant-2"))]  # fmt: skip
    assert all(hosts) and all(not hosts[0] & other for other in hosts[1:])


def test_a_line_hostname_names_its_hosts_and_a_long_one_is_refused(helm):
    line = '[{"name": "weld-line-1", "variant": "weld", "hostname": "weld"}]'
    objects = objects_of(helm, "rel", "gpu", "--set-json", f"lines={line}")
    assert hosts_of(objects) == {"weld.plants.example.com", "weld-triton.plants.example.com"}
    result = helm("template", "rel", str(CHART), "--namespace", "n" * 60,
                  "--set-json", 'lines=[{"name": "weld", "variant": "weld"}]')  # fmt: skip
    assert result.returncode != 0
    assert "lines[weld]: the ingress host label" in result.stderr and "hostname" in result.stderr


def test_notes_name_the_hosts_the_ingresses_serve(helm, tmp_path):
    """`helm template` never renders NOTES.txt (only install does, and that needs a
    cluster), so a copy of the chart renders it as a ConfigMap to prove it renders."""
    import shutil

    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    notes = (chart / "templates" / "NOTES.txt").read_text()
    (chart / "templates" / "NOTES.txt").unlink()
    (chart / "templates" / "_notes.tpl").write_text(
        '{{- define "notes.render" -}}' + notes + "{{- end -}}"
    )
    (chart / "templates" / "notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\ndata:\n  notes: |\n"
        '{{ include "notes.render" . | indent 4 }}\n'
    )
    args = ["template", "rel", str(chart), "--namespace", "plant", *values_args("gpu")]
    result = helm(*args)
    assert result.returncode == 0, result.stderr
    objects = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    (rendered,) = [o["data"]["notes"] for o in objects if o["metadata"]["name"] == "notes"]
    for host in hosts_of(objects):
        assert f"https://{host}/" in rendered, host
