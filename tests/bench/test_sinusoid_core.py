"""Pieces of the sinusoid bench: meta-training lowers the loss, MSE with CI, row selection."""

from __future__ import annotations

import math

import pytest
import torch

from landcover.bench.sinusoid.core import (
    Budget,
    Row,
    build_row,
    evaluate,
    held_out_batches,
    meta_train,
    mse_with_ci,
)


def test_mse_with_ci_and_divergence_flag():
    pred = torch.zeros(4, 3, 1)
    target = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(4, 1, 1).expand(4, 3, 1)
    cell = mse_with_ci(pred, target)
    assert cell["mse"] == pytest.approx(7.5)
    per_task = torch.tensor([1.0, 4.0, 9.0, 16.0], dtype=torch.float64)
    assert cell["ci95"] == pytest.approx(1.96 * float(per_task.std()) / 2)
    pred[0, 0, 0] = math.nan
    assert mse_with_ci(pred, target) == {"mse": None, "ci95": None, "diverged": True}


def test_meta_training_improves_on_the_untrained_network():
    row = Row("MAML", "maml", {"inner_lr": 0.01, "steps": 1, "vmap": True})
    tests = held_out_batches((10,), 50, seed=0)
    before = evaluate(build_row(row, 0), tests)["10"]["1"]["mse"]
    learner = build_row(row, 0)
    budget = Budget(iterations=400, meta_batch=25, train_query=20, test_tasks=50, epochs=5)
    seconds, cpu = meta_train(learner, row, budget, (10,), seed=0)
    after = evaluate(learner, tests)["10"]["1"]["mse"]
    assert seconds > 0 and cpu > 0 and after < 0.7 * before


def test_paper_budget_and_device_options():
    import argparse

    from landcover.bench import sinusoid
    from landcover.bench.sinusoid.core import PAPER

    parser = argparse.ArgumentParser()
    sinusoid.add_arguments(parser)
    b = sinusoid._budget(parser.parse_args(["--budget", "paper"]))
    assert (
        (b.iterations, b.meta_batch, b.device)
        == (70_000, 25, "cpu")
        == (PAPER.iterations, PAPER.meta_batch, "cpu")
    )
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match="no CUDA device"):
            sinusoid._budget(parser.parse_args(["--device", "cuda"]))
