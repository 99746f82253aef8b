"""The shared training loop: it learns, repeats itself, stops when told, and resumes."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from anomalyops.components.detectors.trainer import (
    Trainer,
    TrainSettings,
    extract,
    validation_split,
)

TARGET = torch.tensor([2.0, -1.0, 0.5])


def problem(seed: int = 0) -> tuple[nn.Linear, torch.Tensor, torch.Tensor]:
    """A linear regression the loop must solve: y = x·TARGET."""
    torch.manual_seed(seed)
    inputs = torch.randn(64, 3, generator=torch.Generator().manual_seed(1))
    return nn.Linear(3, 1, bias=False), inputs, inputs @ TARGET


def squared_loss(model: nn.Linear, inputs: torch.Tensor, targets: torch.Tensor):
    return lambda indices: ((model(inputs[indices])[:, 0] - targets[indices]) ** 2).mean()


def test_loop_learns_and_same_seed_gives_same_weights():
    weights = []
    for _ in range(2):
        model, inputs, targets = problem()
        log = Trainer(TrainSettings(steps=300, learning_rate=0.05), progress=False).run(
            [model], len(inputs), squared_loss(model, inputs, targets)
        )
        weights.append(model.weight.detach().clone())
    assert log.steps == 300 and log.stopped == "steps"
    assert log.losses[-1] < log.losses[0] / 100
    torch.testing.assert_close(weights[0][0], TARGET, atol=0.05, rtol=0)
    assert torch.equal(weights[0], weights[1])
    assert not model.training  # handed back in eval mode


def test_early_stopping_keeps_the_best_weights():
    model, inputs, targets = problem()
    values = iter([5.0, 1.0, 3.0, 4.0, 6.0, 7.0])
    seen = {}

    def validate() -> float:
        value = next(values)
        seen[value] = model.weight.detach().clone()
        return value

    log = Trainer(
        TrainSettings(steps=1000, learning_rate=0.01, validate_every=10, patience=3),
        progress=False,
    ).run([model], len(inputs), squared_loss(model, inputs, targets), validate)
    assert log.stopped == "early" and log.steps == 50 and log.best_step == 20
    assert torch.equal(model.weight, seen[1.0])


def test_time_budget_stops_the_loop():
    model, inputs, targets = problem()
    loss = squared_loss(model, inputs, targets)

    def slow(indices):
        torch.ones(300, 300) @ torch.ones(300, 300)  # a step that takes real time
        return loss(indices)

    log = Trainer(TrainSettings(steps=10**6, time_budget_s=0.2), progress=False).run(
        [model], len(inputs), slow
    )
    assert log.stopped == "time" and 0 < log.steps < 10**6


def test_checkpoint_resumes_where_an_unbroken_run_would_be(tmp_path):
    settings = TrainSettings(steps=120, learning_rate=0.02, validate_every=40)
    model, inputs, targets = problem()
    Trainer(settings, progress=False).run(
        [model], len(inputs), squared_loss(model, inputs, targets)
    )
    unbroken = model.weight.detach().clone()

    model, inputs, targets = problem()
    loss = squared_loss(model, inputs, targets)
    calls = {"n": 0}

    def interrupted(indices):
        calls["n"] += 1
        if calls["n"] > 85:  # dies after the checkpoint at step 80
            raise KeyboardInterrupt
        return loss(indices)

    with pytest.raises(KeyboardInterrupt):
        Trainer(settings, progress=False, checkpoint=tmp_path).run(
            [model], len(inputs), interrupted
        )
    model, inputs, targets = problem(seed=7)  # fresh weights: all must come from the file
    log = Trainer(settings, progress=False, checkpoint=tmp_path).run(
        [model], len(inputs), squared_loss(model, inputs, targets)
    )
    assert log.steps == 120
    torch.testing.assert_close(model.weight, unbroken, rtol=1e-5, atol=1e-6)

    other = TrainSettings(steps=50)
    with pytest.raises(ValueError, match="other training settings"):
        Trainer(other, progress=False, checkpoint=tmp_path).run([model], 64, loss)


def test_diverging_loss_and_bad_settings_are_refused():
    model, inputs, _ = problem()
    with pytest.raises(FloatingPointError, match="step 1"):
        Trainer(TrainSettings(steps=5), progress=False).run(
            [model], 64, lambda i: model(inputs[i]).sum() * math.inf
        )
    with pytest.raises(ValueError, match="learning_rate"):
        TrainSettings(steps=5, learning_rate=float("nan"))
    with pytest.raises(ValueError, match="nothing to train"):
        Trainer(TrainSettings(steps=5), progress=False).run(
            [model.requires_grad_(False)], 64, lambda i: torch.zeros(())
        )


def test_validation_split_holds_out_a_tenth_from_ten_images_up():
    train, held = validation_split(50)
    assert len(held) == 5 and len(set(train) | set(held)) == 50 and not set(train) & set(held)
    assert len(validation_split(9)[1]) == 0
    assert np.array_equal(validation_split(50)[1], held)


def test_extract_runs_each_image_once_on_the_device():
    images = np.random.default_rng(0).integers(0, 255, (10, 8, 8, 3), dtype=np.uint8)
    calls = []

    def module(batch: torch.Tensor) -> list[torch.Tensor]:
        calls.append(len(batch))
        x = batch.float().mean(-1)
        return [x, x * 2]

    first, second = extract(module, images, torch.device("cpu"), progress=False)
    assert sum(calls) == 10 and first.shape == (10, 8, 8)
    torch.testing.assert_close(second, first * 2)
