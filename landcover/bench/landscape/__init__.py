"""``landcover bench landscape``: where each method puts the initialisation, in pictures.

The comparison of the notes (section 3.4, after Finn's lecture): on a problem with two
parameters, draw the loss contours of two tasks and the parameter paths of

* pre-training (joint training on the pooled tasks, then fine-tuning),
* MAML (Finn et al. 2017), first-order MAML (same paper, section 5.2),
* Reptile (Nichol et al. 2018),

each meta-trained by the library's own learners (:func:`landcover.meta.registry.build_learner`)
and ending in ``k`` plain gradient steps on each task, the same steps for all four.

The task family: linear regression ``y = <w*, x>`` without noise, ``w*`` spread over a
half ring at angle ``phi``, inputs ``x ~ N(0, c R(psi) diag(l_hi, l_lo) R(psi)^T)`` with a
random orientation ``psi`` and random eigenvalues, so each task's loss is an elongated
bowl around its ``w*``; the scale ``c`` grows from 0.03 (right, flat bowls that a few
steps barely move through) to 1 (left, steep bowls that a few steps nearly solve). That
heterogeneity is what separates the methods: pre-training weighs tasks by curvature,
MAML by what is left after adaptation. The losses are quadratic, so every method's ideal
initialisation has a closed form (:func:`closed_form_init`); the Markdown reports it
next to what meta-training found.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from landcover.meta.registry import build_learner
from landcover.tasks.task import Task

BENCH_NAME = "landscape"
BENCH_HELP = (
    "2-parameter loss landscapes: pre-training, MAML, FOMAML and Reptile paths (PNG + Markdown)"
)

#: Method label -> registry name.
METHODS: dict[str, str] = {
    "pre-training": "pretrain",
    "MAML": "maml",
    "FOMAML": "fomaml",
    "Reptile": "reptile",
}
COLORS = {
    "pre-training": "tab:purple",
    "MAML": "tab:green",
    "FOMAML": "tab:olive",
    "Reptile": "tab:red",
}


@dataclass
class Problem:
    """A task family with its optima: tasks ``[i]`` have optimum ``optima[i]``."""

    tasks: list[Task]
    optima: Tensor  # (n, 2)


def make_tasks(n: int, *, seed: int, shots: int = 20, query: int = 10) -> Problem:
    """``n`` noise-free 2-D linear-regression tasks with spread-out optima (float64)."""
    g = torch.Generator().manual_seed(seed)

    def u(lo: float, hi: float) -> Tensor:
        return lo + (hi - lo) * torch.rand((), generator=g, dtype=torch.float64)

    tasks, optima = [], []
    for _ in range(n):
        phi, radius, psi = u(0.0, math.pi), u(1.5, 2.5), u(0.0, math.pi)
        w = torch.stack([radius * torch.cos(phi), radius * torch.sin(phi)])
        rot = torch.stack(
            [torch.stack([psi.cos(), -psi.sin()]), torch.stack([psi.sin(), psi.cos()])]
        )
        c = 0.03 + 0.97 * phi / math.pi
        scale = (c * torch.stack([u(1.0, 2.0), u(0.2, 0.5)])).sqrt()
        x = torch.randn(shots + query, 2, generator=g, dtype=torch.float64) * scale @ rot.T
        y = x @ w[:, None]
        tasks.append(Task(x[:shots], y[:shots], x[shots:], y[shots:], {"optimum": w.tolist()}))
        optima.append(w)
    return Problem(tasks, torch.stack(optima))


def _hessian(x: Tensor) -> Tensor:
    return 2.0 * x.T @ x / x.shape[0]  # of the mean squared error


def closed_form_init(method: str, problem: Problem, alpha: float, steps: int) -> Tensor:
    """The fixed point of full-batch meta-training of ``method`` (label of :data:`METHODS`).

    With support Hessian ``H``, query Hessian ``Q`` and ``M = I - alpha H``, a task's
    adapted weights are ``w* + M^k (theta - w*)``; each method's stationarity condition is
    ``sum_i A_i (theta - w*_i) = 0`` with ``A = Q_pooled`` (pre-training), ``M^k Q M^k``
    (MAML), ``Q M^k`` (FOMAML) or ``I - M^k`` (Reptile).
    """
    lhs = torch.zeros(2, 2, dtype=torch.float64)
    rhs = torch.zeros(2, dtype=torch.float64)
    for task, w in zip(problem.tasks, problem.optima):
        h, q = _hessian(task.support_x), _hessian(task.query_x)
        mk = torch.linalg.matrix_power(torch.eye(2, dtype=torch.float64) - alpha * h, steps)
        a = {
            "pre-training": _hessian(torch.cat([task.support_x, task.query_x])),
            "MAML": mk.T @ q @ mk,
            "FOMAML": q @ mk,
            "Reptile": torch.eye(2, dtype=torch.float64) - mk,
        }[method]
        lhs, rhs = lhs + a, rhs + a @ w
    return torch.linalg.solve(lhs, rhs)


def build(method: str, start: Tensor, alpha: float, steps: int) -> nn.Module:
    """The library learner of ``method`` on a 2-parameter linear model starting at ``start``."""
    model = nn.Linear(2, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(start[None, :])
    name = METHODS[method]
    opts: dict[str, Any] = {"steps": steps}
    opts["finetune_lr" if name == "pretrain" else "inner_lr"] = alpha
    return build_learner(name, model, nn.MSELoss(), **opts)


def meta_train(
    learner: nn.Module,
    tasks: list[Task],
    *,
    iterations: int,
    batch: int,
    lr: float,
    optimizer: str = "adam",
    seed: int = 0,
    progress: str | None = None,
) -> Tensor:
    """Meta-train ``learner`` and return the path of its two parameters ``(iterations+1, 2)``.

    ``optimizer="adam"`` anneals its rate by a cosine; ``"sgd"`` keeps it constant. With
    ``batch >= len(tasks)`` every iteration uses all tasks (deterministic).
    """
    rng = np.random.default_rng(seed)
    params = [p for p in learner.parameters() if p.requires_grad]
    if optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(params, lr=lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, iterations)
    elif optimizer == "sgd":
        opt, sched = torch.optim.SGD(params, lr=lr), None
    else:
        raise ValueError(f"optimizer must be 'adam' or 'sgd'; got {optimizer!r}")
    weight = learner.model.weight
    path = [weight.detach()[0].clone()]
    for _ in tqdm(range(iterations), desc=progress, disable=progress is None, leave=False):
        chosen = (
            range(len(tasks))
            if batch >= len(tasks)
            else rng.choice(len(tasks), batch, replace=False)
        )
        opt.zero_grad()
        learner.meta_backward([tasks[i] for i in chosen])
        opt.step()
        if sched is not None:
            sched.step()
        path.append(weight.detach()[0].clone())
    return torch.stack(path)


def adaptation_path(learner: nn.Module, task: Task, steps: int) -> Tensor:
    """Parameters after ``0..steps`` fine-tuning steps on the support set, ``(steps + 1, 2)``."""
    out = [learner.model.weight.detach()[0].clone()]
    for k in range(1, steps + 1):
        state = learner.adapt(task.support_x, task.support_y, steps=k)
        out.append(state.params["weight"].detach()[0].clone())
    return torch.stack(out)


def _atomic_write(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``landcover bench landscape``."""
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("runs/landscape"),
        help="folder for landscape.md and img/landscape_*.png (default runs/landscape)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers as JSON")
    parser.add_argument("--quick", action="store_true", help="fewer iterations and test tasks (CI)")
    parser.add_argument("--alpha", type=float, default=0.25, help="inner / fine-tuning rate")
    parser.add_argument(
        "--train-steps", type=int, default=2, help="inner steps during meta-training"
    )
    parser.add_argument(
        "--eval-steps", type=int, default=5, help="adaptation steps drawn and scored"
    )
    parser.add_argument(
        "--iterations",
        type=int,
        default=None,
        help="meta-training iterations per method (default 500, --quick 150)",
    )
    parser.add_argument(
        "--test-tasks", type=int, default=None, help="unseen tasks scored (default 200, --quick 40)"
    )
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    """Meta-train the four methods, score them, draw the pictures, write the Markdown."""
    from landcover.bench.landscape.plots import render

    torch.manual_seed(args.seed)
    iterations, n_test = (150, 40) if args.quick else (500, 200)
    iterations = iterations if args.iterations is None else args.iterations
    n_test = n_test if args.test_tasks is None else args.test_tasks
    if iterations < 1 or n_test < 2 or args.eval_steps < 1 or args.train_steps < 0:
        raise ValueError(
            "need --iterations >= 1, --test-tasks >= 2, --eval-steps >= 1 and --train-steps >= 0; "
            f"got {iterations}, {n_test}, {args.eval_steps}, {args.train_steps}"
        )
    if not args.alpha > 0:
        raise ValueError(f"--alpha (the inner / fine-tuning rate) must be > 0; got {args.alpha}")
    train = make_tasks(200, seed=args.seed)
    test = make_tasks(n_test, seed=args.seed + 1)
    shown = _pick_shown(test)
    start = torch.tensor([2.5, -2.0], dtype=torch.float64)
    results: dict[str, Any] = {
        "alpha": args.alpha,
        "train_steps": args.train_steps,
        "eval_steps": args.eval_steps,
        "start": start.tolist(),
        "train_tasks": len(train.tasks),
        "support_points": len(train.tasks[0].support_x),
        "shown_tasks": shown,
        "methods": {},
    }
    all_dists: dict[str, Tensor] = {}
    for method in METHODS:
        learner = build(method, start, args.alpha, args.train_steps)
        path = meta_train(
            learner,
            train.tasks,
            iterations=iterations,
            batch=20,
            lr=0.15,
            seed=args.seed,
            progress=f"meta-train {method}",
        )
        init = path[-1]
        ideal = closed_form_init(method, train, args.alpha, args.train_steps)
        paths = [adaptation_path(learner, t, args.eval_steps) for t in test.tasks]
        dists = torch.stack([(p - w).norm(dim=1) for p, w in zip(paths, test.optima)])
        all_dists[method] = dists
        mse = torch.stack(
            [((t.query_x @ p.T - t.query_y) ** 2).mean(0) for p, t in zip(paths, test.tasks)]
        )
        results["methods"][method] = {
            "init": init.tolist(),
            "closed_form_init": ideal.tolist(),
            "init_error": float((init - ideal).norm()),
            "meta_path": path.tolist(),
            "mean_distance": dists.mean(0).tolist(),
            "distance_ci95": (1.96 * dists.std(0) / math.sqrt(len(dists))).tolist(),
            "mean_query_mse": mse.mean(0).tolist(),
            "query_mse_ci95": (1.96 * mse.std(0) / math.sqrt(len(mse))).tolist(),
            "shown": {
                str(i): {
                    "path": paths[i].tolist(),
                    "distance": dists[i].tolist(),
                }
                for i in shown
            },
        }
    base = all_dists["pre-training"]
    for method, d in all_dists.items():
        diff = d - base  # paired over the same test tasks
        results["methods"][method]["paired_vs_pretraining"] = {
            "mean": diff.mean(0).tolist(),
            "ci95": (1.96 * diff.std(0) / math.sqrt(len(diff))).tolist(),
        }
    files = render(results, train, test, args.out)
    _print_table(results)
    if args.json is not None:
        _atomic_write(args.json, lambda p: p.write_text(json.dumps(results, indent=1)))
        files.append(args.json)
    print("wrote " + ", ".join(str(f) for f in files))
    return 0


def _pick_shown(problem: Problem) -> list[int]:
    """Two test tasks whose optima are far apart (the leftmost and the rightmost)."""
    x = problem.optima[:, 0]
    return [int(x.argmin()), int(x.argmax())]


def _print_table(results: dict[str, Any]) -> None:
    k = results["eval_steps"]
    cols = (
        [0, 1, results["train_steps"], k] if results["train_steps"] not in (0, 1, k) else [0, 1, k]
    )
    head = f"{'method':<13} {'init':>16} {'closed form':>16}" + "".join(
        f" {'k=' + str(c):>8}" for c in cols
    )
    print(f"mean distance to the task optimum after k steps (alpha={results['alpha']})")
    print(head)
    for method, r in results["methods"].items():
        init = "({:+.2f}, {:+.2f})".format(*r["init"])
        ideal = "({:+.2f}, {:+.2f})".format(*r["closed_form_init"])
        print(
            f"{method:<13} {init:>16} {ideal:>16}"
            + "".join(f" {r['mean_distance'][c]:8.3f}" for c in cols)
        )
