"""The transformer's CPU budget: a small share of the CPUs, leaving the rest to Triton."""

from __future__ import annotations

import pytest

from anomalyops.serving.threads import ENV
from anomalyops.serving.transformer.model import AnomalyTransformer
from anomalyops.serving.transformer.protocol import Settings
from anomalyops.serving.transformer.server import main, transformer_budget


@pytest.mark.parametrize(
    ("requested", "env", "threads", "source"),
    [
        (None, "16", 2, "the transformer's share of ANOMALYOPS_THREADS"),
        (None, "1", 1, "ANOMALYOPS_THREADS"),  # never more than the CPUs given
        (6, "1", 6, "--threads"),  # an explicit count is taken as asked
    ],
)
def test_budget_is_a_small_share_unless_asked(monkeypatch, requested, env, threads, source):
    monkeypatch.setenv(ENV, env)
    budget = transformer_budget(requested, small=2)
    assert (budget.threads, budget.source) == (threads, source)


def test_cpu_stages_run_in_a_pool_of_the_budget(tmp_path):
    model = AnomalyTransformer("weld", "127.0.0.1:1", tmp_path, tmp_path / "log.db",
                               Settings(threads=3))  # fmt: skip
    try:
        assert model.cpu_pool._max_workers == 3
    finally:
        model.cpu_pool.shutdown()


def test_bad_threads_flag_is_a_usage_error(capsys):
    argv = ["--model_name", "weld", "--predictor_host", "127.0.0.1:1",
            "--model_repository", "repo", "--threads", "0"]  # fmt: skip
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2 and "--threads must be at least 1" in capsys.readouterr().err
