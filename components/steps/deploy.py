"""Deploy step: the KFP component around components/deploy/release.py (no logic here)."""

# No `from __future__ import annotations`: KFP reads the real annotation objects.
from anomalyops.components.steps import component


@component
def deploy_component(
    decision_json: str,
    repository: str,
    flavour: str,
    triton_url: str = "",
    target: str = "repository",
    kserve_json: str = "{}",
) -> str:
    """Deploy the registered version if it became champion; returns decision + deployment."""
    import json

    from anomalyops.components.deploy.release import release

    decision = json.loads(decision_json)
    deployment = release(decision, repository, flavour, triton_url, target, kserve_json)
    print(f"deploy: {deployment.reason}")
    return json.dumps({"decision": decision, "deployment": deployment.to_dict()})
