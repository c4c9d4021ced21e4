from __future__ import annotations

import argparse
import json

import pytest
import torch

from landcover.bench import landscape as L
from landcover.bench.cli import discover


def _analytic_gradient(method: str, problem: L.Problem, theta: torch.Tensor, alpha: float, k: int):
    """Mean meta-gradient of a quadratic task family, derived by hand."""
    eye = torch.eye(2, dtype=torch.float64)
    total = torch.zeros(2, dtype=torch.float64)
    for task, w in zip(problem.tasks, problem.optima):
        h = 2 * task.support_x.T @ task.support_x / len(task.support_x)
        q = 2 * task.query_x.T @ task.query_x / len(task.query_x)
        mk = torch.linalg.matrix_power(eye - alpha * h, k)
        pooled = torch.cat([task.support_x, task.query_x])
        a = {
            "pre-training": 2 * pooled.T @ pooled / len(pooled),
            "MAML": mk @ q @ mk,
            "FOMAML": q @ mk,
            "Reptile": eye - mk,
        }[method]
        total = total + a @ (theta - w)
    return total / len(problem.tasks)


@pytest.mark.parametrize("method", list(L.METHODS))
def test_library_meta_gradient_matches_the_closed_form(method: str) -> None:
    problem = L.make_tasks(5, seed=3)
    theta = torch.tensor([0.7, -0.4], dtype=torch.float64)
    learner = L.build(method, theta, alpha=0.25, steps=2)
    learner.meta_backward(problem.tasks)
    expected = _analytic_gradient(method, problem, theta, 0.25, 2)
    assert torch.allclose(learner.model.weight.grad[0], expected, rtol=1e-10, atol=1e-12)
    # The closed-form initialisation is a stationary point of the same meta-gradient.
    ideal = L.closed_form_init(method, problem, 0.25, 2)
    assert _analytic_gradient(method, problem, ideal, 0.25, 2).abs().max() < 1e-12


def test_full_batch_meta_training_reaches_the_closed_form() -> None:
    problem = L.make_tasks(4, seed=5)
    ideal = L.closed_form_init("Reptile", problem, 0.25, 2)
    learner = L.build("Reptile", torch.tensor([2.0, -1.0], dtype=torch.float64), 0.25, 2)
    path = L.meta_train(learner, problem.tasks, iterations=150, batch=4, lr=1.0, optimizer="sgd")
    assert path.shape == (151, 2)
    assert (path[-1] - ideal).norm() < 1e-4 * (path[0] - ideal).norm()


def test_adaptation_path_is_plain_gradient_descent() -> None:
    problem = L.make_tasks(1, seed=0)
    task, w = problem.tasks[0], problem.optima[0]
    learner = L.build("MAML", torch.zeros(2, dtype=torch.float64), 0.25, 1)
    path = L.adaptation_path(learner, task, 3)
    h = 2 * task.support_x.T @ task.support_x / len(task.support_x)
    theta = torch.zeros(2, dtype=torch.float64)
    for k in range(4):
        assert torch.allclose(path[k], theta, atol=1e-12)
        theta = theta - 0.25 * h @ (theta - w)


def test_bench_is_discovered_and_writes_pictures_and_markdown(tmp_path) -> None:
    assert "landscape" in discover()
    parser = argparse.ArgumentParser()
    L.add_arguments(parser)
    args = parser.parse_args(
        [
            "--out",
            str(tmp_path),
            "--json",
            str(tmp_path / "r.json"),
            "--iterations",
            "3",
            "--test-tasks",
            "3",
            "--eval-steps",
            "2",
        ]
    )
    assert L.run(args) == 0
    for name in ("paths", "inits", "distance"):
        png = tmp_path / "img" / f"landscape_{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (tmp_path / "landscape.md").read_text()
    assert "img/landscape_paths.png" in text and "| MAML |" in text
    # the page states the task sizes the bench used (it once said 10 support points for 20)
    shots = len(L.make_tasks(1, seed=0).tasks[0].support_x)
    assert f"on its {shots} support points" in text
    assert "optima of the 200 training tasks" in text
    data = json.loads((tmp_path / "r.json").read_text())
    assert set(data["methods"]) == set(L.METHODS)
    assert len(data["methods"]["MAML"]["mean_distance"]) == 3


def test_bad_arguments() -> None:
    parser = argparse.ArgumentParser()
    L.add_arguments(parser)
    with pytest.raises(ValueError, match="iterations"):
        L.run(parser.parse_args(["--iterations", "0"]))
    with pytest.raises(ValueError, match="--alpha"):
        L.run(parser.parse_args(["--alpha", "-1", "--iterations", "1"]))
    with pytest.raises(ValueError, match="optimizer"):
        L.meta_train(
            L.build("MAML", torch.zeros(2, dtype=torch.float64), 0.1, 1),
            [],
            iterations=1,
            batch=1,
            lr=0.1,
            optimizer="lbfgs",
        )
