"""With predictionStore.database set, every writer and reader of the prediction log (each
line's transformer, review page, drift and prune CronJob) takes the one PostgreSQL URL
from its Secret, and none mounts the SQLite volume; images go to the bucket with the
storage credentials; transformers keep only flagged images by default."""

from __future__ import annotations

LINES = ("--set-json", 'lines=[{"name": "weld-1", "variant": "weld", "storageUri": "s3://m/w1",'
         '"transformer": {"maxReplicas": 3}}, {"name": "tile-1", "variant": "tile"}]')  # fmt: skip
SHARED = ("--set", "predictionStore.database.existingSecret=prediction-log",
          "--set", "predictionStore.files=s3://plant/predictions",
          "--set", "storage.existingSecret=anomalyops-storage")  # fmt: skip
SECRET = {"name": "prediction-log", "key": "url"}


def log_users(objects: list[dict]) -> dict[str, tuple[dict, dict]]:
    """where -> (pod spec, the container) for everything that opens the log."""
    found = {}
    for obj in objects:
        where = f"{obj['kind']} {obj['metadata']['name']}"
        if obj["kind"] == "InferenceService":
            pod = obj["spec"]["transformer"]
        elif obj["kind"] == "CronJob":
            pod = obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        elif obj["kind"] == "Deployment" and obj["metadata"]["name"].endswith("-review"):
            pod = obj["spec"]["template"]["spec"]
        else:
            continue
        found[where] = (pod, pod["containers"][0])
    return found


def test_every_log_user_takes_the_shared_url_and_no_volume(render):
    objects = render("default", *LINES, *SHARED)
    users = log_users(objects)
    kinds = sorted(where.split()[0] for where in users)
    assert kinds == ["CronJob"] * 3 + ["Deployment"] * 2 + ["InferenceService"] * 2
    for where, (pod, container) in users.items():
        env = {e["name"]: e for e in container["env"]}
        assert env["ANOMALYOPS_PREDICTION_LOG"]["valueFrom"]["secretKeyRef"] == SECRET, where
        assert "value" not in env["ANOMALYOPS_PREDICTION_LOG"], where  # never inlined
        assert env["ANOMALYOPS_PREDICTION_FILES"]["value"] == "s3://plant/predictions", where
        assert any("$(ANOMALYOPS_PREDICTION_LOG)" in a for a in container["args"]), where
        claims = [v["persistentVolumeClaim"]["claimName"] for v in pod.get("volumes", [])
                  if "persistentVolumeClaim" in v]  # fmt: skip
        if "-drift" in where:  # its own verdicts and alert state only
            assert claims and claims[0].endswith("-predictions"), where
        else:
            assert claims == [], where
        if "-drift" not in where:  # writers and image readers reach the bucket
            assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == (
                "anomalyops-storage"), where  # fmt: skip
    volumes = [
        o
        for o in objects
        if o["kind"] == "PersistentVolumeClaim"
        and o["metadata"]["labels"]["app.kubernetes.io/component"] == "prediction-log"
    ]
    assert volumes and all(v["spec"]["accessModes"] == ["ReadWriteOnce"] for v in volumes)


def test_the_sqlite_default_keeps_the_log_on_the_line_volume(render):
    users = log_users(render("default", *LINES))
    for where, (pod, container) in users.items():
        (log,) = [e for e in container["env"] if e["name"] == "ANOMALYOPS_PREDICTION_LOG"]
        assert log["value"] == "/var/lib/anomalyops/predictions/predictions.db", where
        assert any("persistentVolumeClaim" in v for v in pod["volumes"]), where


def test_transformers_keep_flagged_images_by_default(render):
    for shared in ((), SHARED):
        for line in (o for o in render("default", *LINES, *shared)
                     if o["kind"] == "InferenceService"):  # fmt: skip
            args = line["spec"]["transformer"]["containers"][0]["args"]
            assert "--keep_images=flagged" in args
    objects = render("default", *LINES, "--set", "predictionStore.keepImages=all")
    line = next(o for o in objects if o["kind"] == "InferenceService")
    assert "--keep_images=all" in line["spec"]["transformer"]["containers"][0]["args"]


def test_knative_lines_on_the_shared_log_need_no_volume_flags(render):
    flags = ["kubernetes.podspec-securitycontext", "kubernetes.podspec-init-containers",
             "kubernetes.podspec-topologyspreadconstraints"]  # fmt: skip
    knative = ("--set", "serving.deploymentMode=Knative",
               "--set", f"serving.knativeFeatures={{{','.join(flags)}}}")  # fmt: skip
    objects = render("default", *LINES, *SHARED, *knative)
    assert [o for o in objects if o["kind"] == "InferenceService"]
