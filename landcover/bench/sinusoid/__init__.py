"""``landcover bench sinusoid``: the MAML regression benchmark for every gradient learner.

Trains each row of :data:`landcover.bench.sinusoid.core.ROWS`, evaluates MSE after 1 and
10 inner steps for K = 5, 10, 20 on the same unseen test tasks, prints a table next to
the published anchors (Li et al. 2017, Meta-SGD, Table 1), writes JSON and a PNG of the
adapted curves of one test task. ``--quick`` is the CI-sized run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from landcover.bench.sinusoid.core import (
    ANCHORS,
    EVAL_STEPS,
    KS,
    PAPER,
    QUICK,
    ROWS,
    Budget,
    Row,
    build_row,
    evaluate,
    held_out_batches,
    meta_train,
    predict_tasks,
)
from landcover.device import check_device
from landcover.tasks.sinusoid import SinusoidBatch

BENCH_NAME = "sinusoid"
BENCH_HELP = "MAML sinusoid regression: every gradient learner, MSE after 1/10 steps, K=5/10/20"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the bench."""
    full = Budget()
    parser.add_argument("--quick", action="store_true", help="CI-sized run (about 2 CPU-minutes)")
    parser.add_argument(
        "--budget",
        choices=["full", "paper"],
        default="full",
        help="full: CPU-sized (default); paper: MAML's 70,000 iterations x 25 tasks (GPU)",
    )
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="torch device")
    parser.add_argument("--json", type=Path, help="write the results as JSON to this file")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/sinusoid"), help="PNG folder")
    parser.add_argument("--iterations", type=int, help=f"meta-iterations (full: {full.iterations})")
    parser.add_argument("--meta-batch", type=int, help=f"tasks per iteration ({full.meta_batch})")
    parser.add_argument("--test-tasks", type=int, help=f"test tasks per K ({full.test_tasks})")
    parser.add_argument("--per-k", action="store_true", help="one model per K (papers; 3x cost)")
    parser.add_argument("--rows", nargs="+", metavar="LABEL", help="run only these rows")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    parser.add_argument("--jobs", type=int, default=1, help="rows trained in parallel processes")


def _budget(args: argparse.Namespace) -> Budget:
    if args.quick:
        b = Budget(**vars(QUICK))
    else:
        b = Budget(**vars(PAPER)) if getattr(args, "budget", "full") == "paper" else Budget()
    b.device = getattr(args, "device", "cpu")
    try:
        check_device(b.device)
    except ValueError as err:
        raise SystemExit(str(err)) from None
    if args.iterations is not None:
        b.iterations = args.iterations
    if args.meta_batch is not None:
        b.meta_batch = args.meta_batch
    if args.test_tasks is not None:
        b.test_tasks = args.test_tasks
    b.per_k = bool(args.per_k)
    for name in ("iterations", "meta_batch", "test_tasks"):
        if getattr(b, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= 1")
    return b


def _rows(selected: list[str] | None) -> list[Row]:
    if not selected:
        return list(ROWS)
    by_label = {r.label.lower(): r for r in ROWS} | {r.learner: r for r in ROWS}
    unknown = [s for s in selected if s.lower() not in by_label]
    if unknown:
        raise SystemExit(f"unknown row(s) {unknown}; choose from {[r.label for r in ROWS]}")
    return [by_label[s.lower()] for s in selected]


def run_row(
    row: Row, budget: Budget, seed: int, progress: Any = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train and evaluate one row; return its JSON entry and its learner's state dict."""
    tests = held_out_batches(KS, budget.test_tasks, seed)
    groups = [(k,) for k in KS] if budget.per_k else [KS]
    entry: dict[str, Any] = {"label": row.label, "learner": row.learner, "options": row.options}
    entry |= {"train_seconds": 0.0, "train_cpu_seconds": 0.0, "eval_seconds": 0.0}
    entry["results"] = {}
    learner = None
    for ks in groups:
        learner = build_row(row, seed)
        wall, cpu = meta_train(learner, row, budget, ks, seed, progress)
        entry["train_seconds"] += wall
        entry["train_cpu_seconds"] += cpu
        t0 = time.perf_counter()
        entry["results"] |= evaluate(learner, {k: tests[k] for k in ks})
        entry["eval_seconds"] += time.perf_counter() - t0
    entry["iterations"] = max(1, int(budget.iterations / row.cost)) if row.train else 0
    return entry, learner.state_dict()


def _row_in_subprocess(row: Row, budget: Budget, seed: int) -> tuple[dict, dict]:
    torch.set_num_threads(1)
    return run_row(row, budget, seed)


def run_rows(
    rows: list[Row], budget: Budget, seed: int, jobs: int = 1
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Train and evaluate ``rows`` (``jobs`` worker processes); return JSON rows and learners.

    Rows are seeded independently, so the numbers do not depend on ``jobs``.
    """
    from rich.progress import Progress

    results: list[dict[str, Any]] = []
    learners: dict[str, Any] = {}
    with Progress(transient=True) as bar:
        if jobs <= 1:
            for row in rows:
                n_iter = (max(1, int(budget.iterations / row.cost)) if row.train else 1) * (
                    3 if budget.per_k else 1
                )
                job = bar.add_task(row.label, total=n_iter)
                entry, state = run_row(row, budget, seed, lambda n, j=job: bar.advance(j, n))
                bar.remove_task(job)
                results.append(entry)
                learners[row.label] = _rebuild(row, seed, state)
            return results, learners
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import get_context

        job = bar.add_task(f"{len(rows)} rows on {jobs} processes", total=len(rows))
        with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(_row_in_subprocess, row, budget, seed) for row in rows]
            for row, future in zip(rows, futures):
                entry, state = future.result()
                bar.advance(job, 1)
                results.append(entry)
                learners[row.label] = _rebuild(row, seed, state)
    return results, learners


def _rebuild(row: Row, seed: int, state: dict[str, Any]) -> Any:
    learner = build_row(row, seed)
    learner.load_state_dict(state)
    return learner


def _cell(cell: dict[str, Any]) -> str:
    if cell["diverged"]:
        return "diverged"
    return f"{cell['mse']:.3f} ± {cell['ci95']:.3f}"


def print_table(results: list[dict[str, Any]], title: str) -> None:
    """Print the results and the anchors as a rich table."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("learner")
    for k in KS:
        for s in EVAL_STEPS:
            table.add_column(f"K={k} {s} step{'s' if s > 1 else ''}", justify="right")
    table.add_column("train s (cpu)", justify="right")
    for entry in results:
        cells = [_cell(entry["results"][str(k)][str(s)]) for k in KS for s in EVAL_STEPS]
        cpu = entry.get("train_cpu_seconds", 0.0)
        table.add_row(entry["label"], *cells, f"{entry['train_seconds']:.0f} ({cpu:.0f})")
    for name, anchor in ANCHORS.items():
        cells = [f"{anchor[k]:.2f}" if s == 1 else "" for k in KS for s in EVAL_STEPS]
        table.add_row(f"[dim]{name} (Li et al. 2017)[/dim]", *cells, "")
    console = Console()
    if not console.is_terminal:  # logs and CI: do not wrap the cells
        console = Console(width=200)
    console.print(table)


def compare_to_anchors(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """For each anchored row: measured one-step MSE vs the published value per K."""
    out: dict[str, dict[str, Any]] = {}
    for entry in results:
        anchor = ANCHORS.get(entry["label"])
        if anchor is None:
            continue
        out[entry["label"]] = {}
        for k in KS:
            cell = entry["results"].get(str(k), {}).get("1")
            mse = None if cell is None else cell["mse"]
            out[entry["label"]][str(k)] = {
                "measured": mse,
                "anchor": anchor[k],
                "reached": mse is not None and mse <= anchor[k],
            }
    return out


def plot_task(learners: dict[str, Any], batch: SinusoidBatch, path: Path) -> None:
    """PNG of the adapted curves of test task 0 (K=10): one panel per row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = torch.linspace(-5, 5, 200).view(1, -1, 1)
    truth = batch.amplitude[0] * torch.sin(grid - batch.phase[0])
    one = SinusoidBatch(
        batch.support_x[:1], batch.support_y[:1], grid, truth, batch.amplitude[:1], batch.phase[:1]
    )
    n = len(learners)
    cols = min(5, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    for ax, (label, learner) in zip(axes.flat, learners.items()):
        ax.plot(grid.view(-1), truth.view(-1), "k-", lw=1.5, label="true")
        for steps, style in ((0, ":"), *zip(EVAL_STEPS, ("--", "-"))):
            pred = predict_tasks(learner, one, steps).detach()
            ax.plot(grid.view(-1), pred.view(-1), style, label=f"{steps} steps")
        ax.plot(one.support_x.view(-1), one.support_y.view(-1), "r^", ms=5, label="support")
        ax.set_title(label, fontsize=9)
        ax.set_ylim(-6, 6)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def write_json(payload: dict[str, Any], path: Path) -> None:
    """Write ``payload`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(payload, fh, indent=2)
    os.replace(tmp, path)


def run(args: argparse.Namespace) -> int:
    """Run the bench."""
    if args.threads:
        torch.set_num_threads(args.threads)
    budget = _budget(args)
    rows = _rows(args.rows)
    start, cpu_start = time.perf_counter(), time.process_time()
    results, learners = run_rows(rows, budget, args.seed, max(1, args.jobs))
    png = args.out / "adapted_curves.png"
    tests = held_out_batches((10,), 1, args.seed + 1)
    plot_task(learners, tests[10], png)
    payload = {
        "bench": BENCH_NAME,
        "protocol": {
            "amplitude": [0.1, 5.0],
            "phase": [0.0, 3.141592653589793],
            "x": [-5.0, 5.0],
            "network": "MLP 1-40-40-1 ReLU",
            "query_points": 100,
            "ks": list(KS),
            "eval_steps": list(EVAL_STEPS),
            "training": "one model per K" if budget.per_k else "one model on mixed K",
        },
        "budget": vars(budget),
        "quick": bool(args.quick),
        "seed": args.seed,
        "jobs": max(1, args.jobs),
        "rows": results,
        "anchors": {name: {str(k): v for k, v in a.items()} for name, a in ANCHORS.items()},
        "vs_anchors": compare_to_anchors(results),
        "png": str(png),
        "wall_seconds": time.perf_counter() - start,
        "cpu_seconds": time.process_time() - cpu_start,
        "torch_threads": torch.get_num_threads(),
        "machine": platform.platform(),
    }
    title = f"sinusoid MSE (95% CI), {budget.test_tasks} test tasks per K"
    print_table(results, title + (" — QUICK" if args.quick else ""))
    print(
        f"wall time {payload['wall_seconds']:.0f} s (CPU {payload['cpu_seconds']:.0f} s); "
        f"curves: {png}"
    )
    if args.json:
        write_json(payload, args.json)
        print(f"results: {args.json}")
    return 0
