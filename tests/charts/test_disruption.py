"""Replicated components survive a node drain: a PodDisruptionBudget for each one with at
least two replicas (none for a single replica, which it would pin), and topology spread
for each that may run more than one, each selecting exactly the pods KServe labels."""

from __future__ import annotations

LINES = ("--set-json", 'lines=[{"name": "weld-1", "variant": "weld", "storageUri": "s3://m/w",'
         '"minReplicas": 2, "maxReplicas": 4, "transformer": {"minReplicas": 1,'
         '"maxReplicas": 3}}, {"name": "tile-1", "variant": "tile"}]')  # fmt: skip
SHARED = ("--set", "predictionStore.database.existingSecret=prediction-log",
          "--set", "predictionStore.files=s3://plant/predictions")  # fmt: skip


def budgets(objects: list[dict]) -> dict[str, dict]:
    return {o["metadata"]["name"]: o["spec"] for o in objects
            if o["kind"] == "PodDisruptionBudget"}  # fmt: skip


def test_single_replicas_get_no_budget(render):
    assert budgets(render("cpu")) == {}
    assert budgets(render("default")) == {}


def test_each_replicated_component_gets_one_budget_on_its_own_pods(render):
    objects = render("external-mlflow", *LINES, *SHARED, "--set", "review.replicas=2")
    found = budgets(objects)
    assert set(found) == {
        "rel-anomalyops-mlflow", "rel-anomalyops-weld-1-predictor",
        "rel-anomalyops-weld-1-review", "rel-anomalyops-tile-1-review"}  # fmt: skip
    assert all(spec["maxUnavailable"] == 1 for spec in found.values())
    # KServe's pod labels (components/predictor.go): that line's Triton pods only.
    assert found["rel-anomalyops-weld-1-predictor"]["selector"]["matchLabels"] == {
        "serving.kserve.io/inferenceservice": "rel-anomalyops-weld-1",
        "component": "predictor",
    }
    # The chart's own Deployments: each budget selects what its Deployment runs.
    for deployment in (o for o in objects if o["kind"] == "Deployment"):
        name = deployment["metadata"]["name"]
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        selector = found[name]["selector"]["matchLabels"]
        assert selector.items() <= pod_labels.items(), name
    others = [d for d in objects if d["kind"] == "Deployment"]
    for name, spec in found.items():
        if name.endswith("-review"):  # one line's page, not the other's
            hits = [d for d in others if spec["selector"]["matchLabels"].items()
                    <= d["spec"]["template"]["metadata"]["labels"].items()]  # fmt: skip
            assert [d["metadata"]["name"] for d in hits] == [name]


def test_more_than_one_review_page_needs_the_shared_log(helm):
    from chart_values import CHART

    result = helm("template", "rel", str(CHART), *LINES, "--set", "review.replicas=2")
    assert result.returncode != 0 and "needs the shared PostgreSQL log" in result.stderr


def spread(spec: dict) -> list[dict]:
    return spec.get("topologySpreadConstraints", [])


def test_components_that_may_scale_spread_over_nodes_softly(render):
    objects = render("default", *LINES)
    weld, tile = (o for o in objects if o["kind"] == "InferenceService")
    (predictor,) = spread(weld["spec"]["predictor"])
    assert predictor["labelSelector"]["matchLabels"] == {
        "serving.kserve.io/inferenceservice": "rel-anomalyops-weld-1",
        "component": "predictor",
    }
    assert predictor["whenUnsatisfiable"] == "ScheduleAnyway"  # one GPU node still schedules
    assert predictor["topologyKey"] == "kubernetes.io/hostname"
    assert predictor["matchLabelKeys"] == ["pod-template-hash"]  # a rollout's new pods
    (transformer,) = spread(weld["spec"]["transformer"])
    assert transformer["labelSelector"]["matchLabels"]["component"] == "transformer"
    # tile: one replica each, nothing to spread
    assert spread(tile["spec"]["predictor"]) == spread(tile["spec"]["transformer"]) == []
    mlflow = next(o for o in objects if o["metadata"]["name"] == "rel-anomalyops-mlflow"
                  and o["kind"] == "Deployment")  # fmt: skip
    assert spread(mlflow["spec"]["template"]["spec"]) == []
    off = render("default", *LINES, "--set", "topologySpread=null")
    assert all(not spread(o["spec"]["predictor"]) for o in off if o["kind"] == "InferenceService")
