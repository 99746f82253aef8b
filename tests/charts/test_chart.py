"""charts/anomalyops rendered by the real helm for each value set and validated without a
cluster: built-in kinds by kubernetes-validate, KServe kinds by the real CRD schemas."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
from chart_values import CHART, VALUE_SETS, values_args
from k8s_schemas import KSERVE_GROUP, builtin_errors, kserve_errors

PLANT = "plant"  # the namespace the tests render into


def kinds(objects: list[dict], kind: str) -> list[dict]:
    return [obj for obj in objects if obj["kind"] == kind]


def drift_jobs(objects: list[dict]) -> list[dict]:
    return [o for o in kinds(objects, "CronJob")
            if o["metadata"]["labels"]["app.kubernetes.io/component"] == "drift"]  # fmt: skip


def named(objects: list[dict], kind: str, name: str) -> dict:
    (found,) = [o for o in kinds(objects, kind) if o["metadata"]["name"] == name]
    return found


def pod_specs(objects: list[dict]) -> list[tuple[str, dict]]:
    """(where, pod spec) for every pod the chart makes, KServe components included."""
    specs = []
    for obj in objects:
        where = f"{obj['kind']} {obj['metadata']['name']}"
        if obj["kind"] == "Deployment":
            specs.append((where, obj["spec"]["template"]["spec"]))
        elif obj["kind"] == "CronJob":
            specs.append((where, obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]))
        elif obj["kind"] == "Pod":
            specs.append((where, obj["spec"]))
        elif obj["kind"] == "InferenceService":
            specs.append((f"{where} transformer", obj["spec"]["transformer"]))
    return specs


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_lint_strict(helm, value_set):
    result = helm("lint", "--strict", str(CHART), *values_args(value_set))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_builtin_kinds_are_valid_kubernetes(render, value_set):
    builtin = [o for o in render(value_set) if not o["apiVersion"].startswith(KSERVE_GROUP)]
    assert {"Deployment", "Service", "Role", "RoleBinding", "ServiceAccount"} <= {
        o["kind"] for o in builtin
    }
    problems = {f"{o['kind']} {o['metadata']['name']}": builtin_errors(o) for o in builtin}
    assert not {where: found for where, found in problems.items() if found}


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_kserve_objects_match_the_crds(render, value_set):
    objects = render(value_set)
    kserve = [o for o in objects if o["apiVersion"].startswith(KSERVE_GROUP)]
    assert len(kinds(kserve, "ServingRuntime")) == 1
    component = "app.kubernetes.io/component"
    claims = kinds(objects, "PersistentVolumeClaim")
    logs = [o for o in claims if o["metadata"]["labels"][component] == "prediction-log"]
    assert len(kinds(kserve, "InferenceService")) == len(logs)
    problems = {f"{o['kind']} {o['metadata']['name']}": kserve_errors(o) for o in kserve}
    assert not {where: found for where, found in problems.items() if found}


def test_a_misspelt_kserve_field_fails(render):
    line = kinds(render("gpu"), "InferenceService")[0]
    assert kserve_errors(line) == []
    bad = copy.deepcopy(line)
    model = bad["spec"]["predictor"]["model"]
    model["storageURI"] = model.pop("storageUri")
    assert any("storageURI" in e for e in kserve_errors(bad))
    bad = copy.deepcopy(line)
    bad["spec"]["transformer"]["containers"][0]["volumeMount"] = []
    assert any("volumeMount" in e for e in kserve_errors(bad))
    bad = copy.deepcopy(line)
    bad["spec"]["predictor"]["canaryTrafficPercent"] = "ten"
    assert any("canaryTrafficPercent" in e for e in kserve_errors(bad))


def test_a_misspelt_builtin_field_fails(render):
    deployment = kinds(render(), "Deployment")[0]
    assert builtin_errors(deployment) == []
    deployment["spec"]["template"]["spec"]["containers"][0]["resource"] = {}
    assert builtin_errors(deployment)


@pytest.mark.parametrize(
    ("values", "named_in_error"),
    [
        (["lines[0].storageURI=s3://b/r"], "storageURI"),
        (["lines[0].storageUri=/home/me/triton-repository"], "storageUri"),
        (["lines[0].storageUri=s3://b/r", "lines[0].name=Weld_1"], "name"),
        (["lines[0].storageUri=s3://b/r", "lines[0].canaryTrafficPercent=150"], "canary"),
        (["lines[0].storageUri=s3://b/r", "image.tag=latest"], "image.tag"),
        (["lines[0].storageUri=s3://b/r", "serving.deploymentMode=Serverles"], "deploymentMode"),
        (["lines[0].storageUri=s3://b/r", "mlflw.replicas=2"], "mlflw"),
    ],
)
def test_the_values_schema_names_the_bad_field(helm, values, named_in_error):
    sets = ",".join(["lines[0].name=weld-1", "lines[0].variant=weld", *values])
    result = helm("template", "rel", str(CHART), "--set", sets)
    assert result.returncode != 0
    assert named_in_error in result.stderr
    assert "goroutine" not in result.stderr  # a message, not a stack trace


@pytest.mark.parametrize(
    ("value_set", "values", "message"),
    [
        ("default", ["lines[0].minReplicas=3"], "minReplicas 3 is above maxReplicas 1"),
        ("default", ["serving.deploymentMode=Knative"], "Knative mode needs config-features"),
        ("default", ["lines[1].name=w", "lines[1].variant=x", "lines[1].storageUri=s3://b/x"],
         'the name "w" appears twice'),
        ("default", ["mlflow.replicas=2"], "more than one replica needs an external database"),
    ],
)  # fmt: skip
def test_template_guards_refuse_what_cannot_work(helm, value_set, values, message):
    base = "lines[0].name=w,lines[0].variant=weld,lines[0].storageUri=s3://b/w"
    args = ["template", "rel", str(CHART), *values_args(value_set), "--set", base]
    result = helm(*args, "--set", ",".join(values))
    assert result.returncode != 0
    assert message in result.stderr


def test_gpu_lines_ask_for_gpus_on_gpu_nodes(render):
    lines = kinds(render("gpu"), "InferenceService")
    assert [line["metadata"]["name"] for line in lines] == [
        "rel-anomalyops-weld-line-1", "rel-anomalyops-tile-line-2"]  # fmt: skip
    for line in lines:
        predictor = line["spec"]["predictor"]
        assert predictor["model"]["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert predictor["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
        assert predictor["tolerations"][0]["key"] == "nvidia.com/gpu"
        transformer = line["spec"]["transformer"]
        assert "nvidia.com/gpu" not in str(transformer)  # image decoding stays on the CPU
        # Traffic is the deploy step's: the chart never sets a canary, on either component.
        assert "canaryTrafficPercent" not in str(line["spec"])
    weld, tile = lines
    assert weld["spec"]["predictor"]["model"]["storageUri"] == "s3://anomalyops/triton/weld-line-1"
    assert (weld["spec"]["predictor"]["minReplicas"], weld["spec"]["predictor"]["maxReplicas"]) == (
        1,
        3,
    )
    # A line overriding one transformer key keeps the other defaults.
    assert tile["spec"]["transformer"]["maxReplicas"] == 2
    assert tile["spec"]["transformer"]["containers"][0]["resources"]["limits"]["memory"] == "1Gi"


def test_cpu_lines_ask_for_no_gpu_and_run_in_standard_mode(render):
    objects = render("cpu")
    assert "nvidia.com/gpu" not in str(objects)
    (line,) = kinds(objects, "InferenceService")
    assert line["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    assert line["spec"]["predictor"]["model"]["storageUri"] == "gs://anomalyops/triton/bottle-line"
    assert drift_jobs(objects) == []  # drift disabled in this set


def test_a_line_with_no_model_yet_is_stopped_not_crashing(render):
    weld, tile = kinds(render("gpu"), "InferenceService")
    assert "serving.kserve.io/stop" not in weld["metadata"]["annotations"]
    assert tile["metadata"]["annotations"]["serving.kserve.io/stop"] == "true"
    assert "storageUri" not in tile["spec"]["predictor"]["model"]  # no initializer to fail
    assert "storageUris" not in tile["spec"]["transformer"]
    # The deploy step adds the transformer's mount where the chart says it goes.
    assert tile["metadata"]["annotations"]["anomalyops.io/transformer-model-mount"] == "/mnt/models"
    assert "--model_repository=/mnt/models" in tile["spec"]["transformer"]["containers"][0]["args"]


def test_transformer_serves_the_line_variant_from_the_same_repository(render):
    for line in kinds(render("gpu"), "InferenceService"):
        variant = line["metadata"]["labels"]["anomalyops.io/variant"]
        storage = line["spec"]["predictor"]["model"].get("storageUri")
        transformer = line["spec"]["transformer"]
        if storage:  # the whole repository, as Triton's
            assert transformer["storageUris"] == [{"uri": storage, "mountPath": "/mnt/models"}]
        (container,) = transformer["containers"]
        assert container["command"] == ["python", "-m", "anomalyops.serving.transformer"]
        assert f"--model_name={variant}" in container["args"]
        assert "--model_repository=/mnt/models" in container["args"]
        assert "--bind_address=0.0.0.0" in container["args"]
        assert "--log_db=$(ANOMALYOPS_PREDICTION_LOG)" in container["args"]
        assert "--keep_images=flagged" in container["args"]  # the cluster default
        (claim,) = [v["persistentVolumeClaim"]["claimName"] for v in transformer["volumes"]
                    if "persistentVolumeClaim" in v]  # fmt: skip
        assert claim == f"{line['metadata']['name']}-predictions"


def test_the_transformer_accepts_the_flags_chart_and_kserve_pass(render):
    """The chart's and KServe's flags exist in serving/transformer/server.py's own parser."""
    result = subprocess.run(
        [sys.executable, "-m", "anomalyops.serving.transformer", "--help"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    chart_flags = {
        arg.split("=")[0]
        for line in kinds(render("gpu"), "InferenceService")
        for arg in line["spec"]["transformer"]["containers"][0]["args"]
    }
    for flag in chart_flags | {"--predictor_host", "--http_port"}:
        assert flag in result.stdout


def test_mlflow_bundled_keeps_sqlite_and_artifacts_on_its_volume(render):
    objects = render("default")
    deployment = named(objects, "Deployment", "rel-anomalyops-mlflow")
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert "--backend-store-uri=sqlite:////mlflow/mlflow.db" in container["args"]
    assert "--artifacts-destination=/mlflow/artifacts" in container["args"]
    assert named(objects, "PersistentVolumeClaim", "rel-anomalyops-mlflow")
    allowed = next(a for a in container["args"] if a.startswith("--allowed-hosts="))
    assert f"rel-anomalyops-mlflow.{PLANT}.svc.cluster.local:5000" in allowed


def test_mlflow_external_reads_the_database_uri_from_a_secret(render):
    objects = render("external-mlflow")
    deployment = named(objects, "Deployment", "rel-anomalyops-mlflow")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert "--backend-store-uri=$(MLFLOW_BACKEND_STORE_URI)" in container["args"]
    assert "--artifacts-destination=s3://anomalyops/mlflow" in container["args"]
    env = {e["name"]: e for e in container["env"]}
    assert env["MLFLOW_BACKEND_STORE_URI"]["valueFrom"]["secretKeyRef"] == {
        "name": "mlflow-db",
        "key": "uri",
    }
    claims = [p["metadata"]["name"] for p in kinds(objects, "PersistentVolumeClaim")]
    assert claims == ["rel-anomalyops-weld-line-1-predictions"]  # none for MLflow
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert set(volumes) == {"tmp", "auth"}  # no PVC; the auth app's config from its Secret
    assert volumes["auth"]["secret"] == {"secretName": "mlflow-auth-config"}


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_secrets_are_referenced_never_inlined(render, value_set):
    objects = render(value_set)
    assert kinds(objects, "Secret") == []
    for where, spec in pod_specs(objects):
        for container in spec["containers"]:
            for env in container.get("env", []):
                if env["name"].startswith("AWS_") and "KEY" in env["name"]:
                    assert "secretKeyRef" in env["valueFrom"], where
                    assert "value" not in env, where


def test_storage_secret_reaches_the_storage_initializer(render):
    workload = named(render("gpu"), "ServiceAccount", "rel-anomalyops-workload")
    assert workload["secrets"] == [{"name": "anomalyops-storage"}]  # the steps' name too
    assert workload["automountServiceAccountToken"] is False


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_rbac_is_least_privilege(render, value_set):
    objects = render(value_set)
    assert kinds(objects, "ClusterRole") == [] and kinds(objects, "ClusterRoleBinding") == []
    for role in kinds(objects, "Role"):
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], role["metadata"]["name"]
    deployer = named(objects, "Role", "rel-anomalyops-deployer")
    assert deployer["rules"] == [
        {
            "apiGroups": ["serving.kserve.io"],
            "resources": ["inferenceservices"],
            "verbs": ["get", "patch"],  # never create (the chart does), nothing watches
        },
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]},
    ]
    assert [r["metadata"]["name"] for r in kinds(objects, "Role")] == ["rel-anomalyops-deployer"]
    # No pod of the chart talks to the API: one account, no token.
    assert [a["metadata"]["name"] for a in kinds(objects, "ServiceAccount")] == [
        "rel-anomalyops-workload"]  # fmt: skip
    for where, spec in pod_specs(objects):
        assert spec["serviceAccountName"] == "rel-anomalyops-workload", where
        if not where.startswith("InferenceService"):  # KServe's pods: the account's setting
            assert spec["automountServiceAccountToken"] is False, where


def test_the_deploy_role_binds_the_accounts_kubeflow_runs_steps_as(render):
    binding = named(render("default"), "RoleBinding", "rel-anomalyops-deployer")
    assert binding["subjects"] == [  # KFP standalone
        {"kind": "ServiceAccount", "name": "pipeline-runner", "namespace": "kubeflow"}
    ]
    binding = named(render("gpu"), "RoleBinding", "rel-anomalyops-deployer")
    assert binding["subjects"] == [  # multi-user KFP: the profile's namespace
        {"kind": "ServiceAccount", "name": "default-editor", "namespace": "team-vision"}
    ]
    objects = render("default", "--set", "rbac.deployerSubjects=null")
    assert kinds(objects, "Role") == kinds(objects, "RoleBinding") == []


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_container_is_non_root_bounded_and_pinned(render, value_set):
    objects = render(value_set)
    specs = pod_specs(objects)
    runtime = kinds(objects, "ServingRuntime")[0]
    specs.append(("ServingRuntime", {"containers": runtime["spec"]["containers"]}))
    for where, spec in specs:
        for container in spec["containers"]:
            context = {**spec.get("securityContext", {}), **container["securityContext"]}
            assert context["runAsNonRoot"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][bound]), where
            image = container["image"]
            assert "@sha256:" in image or ":" in image.rsplit("/", 1)[-1], where
            assert not image.endswith(":latest"), where


def test_a_digest_pins_the_image(render):
    deployment = named(render("gpu"), "Deployment", "rel-anomalyops-mlflow")
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "ghcr.io/anomalyops/anomalyops@sha256:" + "0123456789abcdef" * 4
    default = named(render("default"), "Deployment", "rel-anomalyops-mlflow")
    assert default["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":0.1.0")


def test_triton_runtime_is_the_projects_triton_image(render):
    runtime = kinds(render(), "ServingRuntime")[0]
    (container,) = runtime["spec"]["containers"]
    assert container["image"] == "ghcr.io/anomalyops/anomalyops-triton:0.1.0"
    # The Dockerfile's `triton` target: the version the tests run, plus onnxruntime.
    dockerfile = (CHART.parents[1] / "Dockerfile").read_text()
    assert "nvcr.io/nvidia/tritonserver:24.10-py3" in dockerfile  # Triton 2.51
    assert "--model-control-mode=none" in container["args"]
    for probe in ("readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"] == {"path": "/v2/health/ready", "port": 8080}
    assert {"name": "triton", "version": "2", "autoSelect": True, "priority": 1} in runtime["spec"][
        "supportedModelFormats"
    ]


def test_drift_cronjob_per_line_reads_that_line_log(render):
    objects = render("external-mlflow")
    (line,) = kinds(objects, "InferenceService")
    (cron,) = drift_jobs(objects)
    assert cron["spec"]["schedule"] == "*/30 * * * *"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "rel-anomalyops-workload"
    assert pod["automountServiceAccountToken"] is False  # the log and MLflow, not the API
    (container,) = pod["containers"]
    assert container["command"] == ["anomalyops"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    log_db = env["ANOMALYOPS_PREDICTION_LOG"]
    assert container["args"] == [
        "drift", "check", "--variant", "weld", "--log-db", "$(ANOMALYOPS_PREDICTION_LOG)",
        "--tracking-uri", env["MLFLOW_TRACKING_URI"], "--out",
        log_db.rsplit("/", 1)[0] + "/drift", "--window", "2000",
    ]  # fmt: skip
    assert (
        env["MLFLOW_TRACKING_URI"] == f"http://rel-anomalyops-mlflow.{PLANT}.svc.cluster.local:5000"
    )
    assert claims(pod) == claims(line["spec"]["transformer"])
    transformer = line["spec"]["transformer"]["containers"][0]
    transformer_env = {e["name"]: e.get("value") for e in transformer["env"]}
    assert transformer_env["ANOMALYOPS_PREDICTION_LOG"] == log_db


def claims(pod: dict) -> list[str]:
    return [v["persistentVolumeClaim"]["claimName"] for v in pod.get("volumes", [])
            if "persistentVolumeClaim" in v]  # fmt: skip


def test_ingress_caps_body_size_in_front_of_each_line(render):
    objects = render("gpu")
    ingresses = {i["metadata"]["name"]: i for i in kinds(objects, "Ingress")
                 if not i["metadata"]["name"].endswith("-review")}  # fmt: skip
    assert set(ingresses) == {
        f"rel-anomalyops-{line}-{part}" for line in ("weld-line-1", "tile-line-2")
        for part in ("transformer", "predictor")
    }  # fmt: skip
    weld = ingresses["rel-anomalyops-weld-line-1-transformer"]
    annotations = weld["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-body-size"] == "16m"
    assert annotations["nginx.ingress.kubernetes.io/auth-url"].startswith("https://oauth2")
    assert annotations["nginx.ingress.kubernetes.io/upstream-vhost"] == (
        f"rel-anomalyops-weld-line-1-transformer.{PLANT}.svc.cluster.local"
    )
    rule = weld["spec"]["rules"][0]
    assert rule["host"] == f"rel-anomalyops-weld-line-1-{PLANT}.plants.example.com"
    backend = rule["http"]["paths"][0]["backend"]["service"]["name"]
    assert backend == "rel-anomalyops-weld-line-1-transformer"  # KServe's Service of the line
    triton = ingresses["rel-anomalyops-weld-line-1-predictor"]["spec"]["rules"][0]
    assert triton["host"] == f"rel-anomalyops-weld-line-1-{PLANT}-triton.plants.example.com"
    assert weld["spec"]["tls"] == [{"hosts": [rule["host"]], "secretName": "plants-tls"}]
    capped = render("gpu", "--set", "ingress.maxBodySize=4m")
    assert {i["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"]
            for i in kinds(capped, "Ingress")
            if not i["metadata"]["name"].endswith("-review")} == {"4m"}  # fmt: skip
    standard = kinds(render("cpu"), "Ingress")
    assert standard and all(
        "nginx.ingress.kubernetes.io/upstream-vhost" not in i["metadata"]["annotations"]
        for i in standard
    )


def test_helm_test_hook_checks_mlflow_and_every_line(render):
    (pod,) = kinds(render("gpu"), "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    urls = pod["spec"]["containers"][0]["args"][2:]
    assert urls == [
        f"http://rel-anomalyops-mlflow.{PLANT}.svc.cluster.local:5000/health",
        f"http://rel-anomalyops-weld-line-1-transformer.{PLANT}.svc.cluster.local/v1/models/weld",
        f"http://rel-anomalyops-weld-line-1-predictor.{PLANT}.svc.cluster.local/v2/models/weld/ready",
        f"http://rel-anomalyops-tile-line-2-transformer.{PLANT}.svc.cluster.local/v1/models/tile",
        f"http://rel-anomalyops-tile-line-2-predictor.{PLANT}.svc.cluster.local/v2/models/tile/ready",
    ]


def test_review_page_per_line_reads_that_line_log_behind_the_ingress(render):
    objects = render("gpu")
    for line in kinds(objects, "InferenceService"):
        name = f"{line['metadata']['name']}-review"
        deployment = named(objects, "Deployment", name)
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        variant = line["metadata"]["labels"]["anomalyops.io/variant"]
        assert container["args"][:2] == ["review", "serve"]
        assert "--log-db=$(ANOMALYOPS_PREDICTION_LOG)" in container["args"]
        assert f"--variant={variant}" in container["args"]
        env = [e for e in container["env"] if e["name"].startswith("ANOMALYOPS_PREDICTION")]
        transformer = line["spec"]["transformer"]["containers"][0]
        assert env == [e for e in transformer["env"] if e["name"].startswith("ANOMALYOPS_PRED")]
        assert claims(pod) == claims(line["spec"]["transformer"])
        assert not pod["automountServiceAccountToken"]  # it needs no Kubernetes API
        ingress = named(objects, "Ingress", name)
        (path,) = ingress["spec"]["rules"][0]["http"]["paths"]
        assert path["path"].startswith("/review") and path["backend"]["service"]["name"] == name
