"""NetworkPolicies: Triton only from its line's transformer, the ingress and (Knative mode)
the activator; transformers and review pages only from the ingress. Pod labels follow
KServe 0.20 (components/predictor.go and transformer.go: serving.kserve.io/inferenceservice
and component)."""


def _policies(objects: list[dict]) -> dict[str, dict]:
    return {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "NetworkPolicy"}


def _lines(objects: list[dict]) -> list[str]:
    return [o["metadata"]["name"] for o in objects if o["kind"] == "InferenceService"]


def test_triton_is_reached_only_by_its_transformer_and_the_ingress(render):
    objects = render("cpu")  # Standard mode, two lines
    policies = _policies(objects)
    assert _lines(objects), "the cpu value set should make at least one line"
    for line in _lines(objects):
        triton = next(spec for name, spec in policies.items() if name.endswith(f"{line}-triton"))
        assert triton["podSelector"]["matchLabels"] == {
            "serving.kserve.io/inferenceservice": line, "component": "predictor"}  # fmt: skip
        peers = triton["ingress"][0]["from"]
        assert {"podSelector": {"matchLabels": {"serving.kserve.io/inferenceservice": line,
                                                "component": "transformer"}}} in peers  # fmt: skip
        namespaces = [p["namespaceSelector"]["matchLabels"]
                      for p in peers if "namespaceSelector" in p]  # fmt: skip
        assert namespaces == [{"kubernetes.io/metadata.name": "ingress-nginx"}]
        transformer = next(s for n, s in policies.items() if n.endswith(f"{line}-transformer"))
        assert all("podSelector" not in p for p in transformer["ingress"][0]["from"])


def test_knative_mode_lets_the_activator_in(render):
    policies = _policies(render("gpu"))  # Knative mode
    triton = next(spec for name, spec in policies.items() if name.endswith("-triton"))
    namespaces = [p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                  for p in triton["ingress"][0]["from"] if "namespaceSelector" in p]  # fmt: skip
    assert sorted(namespaces) == ["ingress-nginx", "knative-serving"]


def test_policies_can_be_turned_off(render):
    assert _policies(render("cpu", "--set", "networkPolicy.enabled=false")) == {}
