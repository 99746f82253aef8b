"""What a run's summary reads back from the kfp.local run folder."""

import json

from anomalyops.pipelines.runner.summary import deploy_output


def test_the_retraining_outcome_is_read_from_the_deploy_steps_output(tmp_path):
    outcome = {"decision": {"promoted": False, "reason": "new version has no image_auroc"},
               "deployment": {"deployed": False, "reason": "v1 keeps serving"}}  # fmt: skip
    step = tmp_path / "deploy-component"
    step.mkdir()
    (step / "executor_output.json").write_text(
        json.dumps({"parameterValues": {"Output": json.dumps(outcome)}})
    )
    assert deploy_output(tmp_path) == outcome
    assert deploy_output(tmp_path / "no-run") is None  # a run that stopped before deploying
    assert deploy_output(None) is None


def test_the_gate_decision_reads_the_same_in_every_summary(capsys):
    from anomalyops.pipelines.runner.summary import print_decision

    print_decision({"model_uri": "models:/weld/2", "promoted": False, "reason": "0.90 < 0.92"})
    print_decision({"model_uri": "models:/weld/3", "promoted": True, "reason": "0.97 > 0.92"})
    assert capsys.readouterr().out.splitlines() == [
        "registered model: models:/weld/2 -> challenger (champion unchanged): 0.90 < 0.92",
        "registered model: models:/weld/3 -> champion: 0.97 > 0.92",
    ]
