"""``landcover bench omniglot --jobs N``: the rows in N parallel processes, merged.

The rows are split into N groups of about equal estimated cost (greedy
longest-processing-time: the costliest row first, each into the least loaded group); each
group runs as its own ``landcover bench omniglot --rows ...`` process with one torch
thread, writing ``OUT/parts/part<i>.json`` and logging to ``OUT/parts/part<i>.log``.
The parent waits for all of them and merges the parts exactly as ``--merge`` does. Models
go to ``OUT/models/<row>.*`` as in a serial run (one row per file, no clash), so
``--eval-only --out OUT`` works after a parallel run.

The cost of a row is its training cap plus an evaluation estimate from
:data:`EVAL_COST` (row name) or :data:`FAMILY_EVAL_COST` (family default), so a new row
gets a cost without an edit here.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

from landcover.bench.omniglot import Row, resolve_budget
from landcover.bench.omniglot.core import SETTINGS, Budget
from landcover.bench.omniglot.report import merge_files

#: Rows of this family share one pretrained backbone inside one process (the cache of
#: ``_train_or_load``): they always run in the same group, and their pretraining is
#: counted once.
SHARED_FAMILY = "baseline"

_OPT_EPISODE = 0.065
#: Evaluation CPU-seconds per test episode and setting (one thread), by row name.
#: Optimization-based rows adapt a whole Conv-4 per episode; Reptile and MAML++ take
#: more inner steps (about 2.5x); the closed-form SVM solves a QP per episode; the
#: others classify precomputed embeddings. Rows not listed take :data:`FAMILY_EVAL_COST`.
EVAL_COST: dict[str, float] = {
    "reptile": 2.5 * _OPT_EPISODE,
    "mamlpp": 2.5 * _OPT_EPISODE,
    "svm": 0.025,
    "metanet": 0.016,
    "pretrain_head": 0.03,
    "pretrain_nn": 0.001,
}
#: Default evaluation CPU-seconds per episode and setting by family; other families
#: take :data:`DEFAULT_EVAL_COST`.
FAMILY_EVAL_COST: dict[str, float] = {"optimization": _OPT_EPISODE, "baseline": 0.03}
DEFAULT_EVAL_COST = 0.005


def eval_cost(row: Row, budget: Budget) -> float:
    """Estimated evaluation CPU-seconds of one row (every setting)."""
    per_episode = EVAL_COST.get(row.name, FAMILY_EVAL_COST.get(row.family, DEFAULT_EVAL_COST))
    return per_episode * budget.eval_episodes * len(SETTINGS)


def train_cost(row: Row, budget: Budget) -> float:
    """A row's training cap in CPU-seconds (the pretraining of the shared family unscaled)."""
    if row.family == SHARED_FAMILY:
        return budget.train_seconds
    return budget.train_seconds * row.train_scale


def estimate_cost(rows: Sequence[Row], budget: Budget, *, eval_only: bool = False) -> float:
    """Estimated CPU-seconds of running ``rows`` in one process.

    Args:
        rows: The rows of one process.
        budget: The run's budget.
        eval_only: No training (``--eval-only``).

    Returns:
        Training caps (the shared family's pretraining counted once) plus evaluation.
    """
    total = sum(eval_cost(r, budget) for r in rows)
    if not eval_only:
        total += sum(train_cost(r, budget) for r in rows if r.family != SHARED_FAMILY)
        total += max((train_cost(r, budget) for r in rows if r.family == SHARED_FAMILY), default=0)
    return total


def partition_rows(
    rows: Sequence[Row], n: int, weight: Callable[[Sequence[Row]], float]
) -> list[list[Row]]:
    """Split rows into at most ``n`` non-empty groups of about equal cost.

    Greedy longest-processing-time: units (one row, or all rows of :data:`SHARED_FAMILY`
    together) by decreasing cost, each into the least loaded group (an empty one first).

    Args:
        rows: Rows in table order.
        n: Number of groups; clamped to ``[1, number of units]``.
        weight: Estimated cost of running a unit of rows in one process (e.g.
            ``partial(estimate_cost, budget=budget)``).

    Returns:
        The groups, each in table order, ordered by their first row.
    """
    shared = [r for r in rows if r.family == SHARED_FAMILY]
    units = [
        shared if r.family == SHARED_FAMILY else [r]
        for r in rows
        if r.family != SHARED_FAMILY or r is shared[0]
    ]
    if not units:
        return []
    n = max(1, min(n, len(units)))
    costs = [weight(u) for u in units]
    groups: list[list[Row]] = [[] for _ in range(n)]
    loads = [0.0] * n
    for u in sorted(range(len(units)), key=lambda i: -costs[i]):
        g = min(range(n), key=lambda k: (bool(groups[k]), loads[k]))
        groups[g] += units[u]
        loads[g] += costs[u]
    pos = {id(r): i for i, r in enumerate(rows)}
    ordered = [sorted(g, key=lambda r: pos[id(r)]) for g in groups]
    return sorted(ordered, key=lambda g: pos[id(g[0])])


def child_command(args: argparse.Namespace, names: Sequence[str], json_path: Path) -> list[str]:
    """The command line of one part: the user's options, these rows, one thread."""
    cmd = [sys.executable, "-m", "landcover.cli", "bench", "omniglot"]
    cmd += ["--rows", ",".join(names), "--json", str(json_path), "--out", str(args.out)]
    cmd += ["--threads", "1", "--seed", str(args.seed)]
    cmd += ["--device", getattr(args, "device", "cpu"), "--budget", getattr(args, "budget", "full")]
    if args.quick:
        cmd.append("--quick")
    if args.eval_only:
        cmd.append("--eval-only")
    if args.train_seconds is not None:
        cmd += ["--train-seconds", str(args.train_seconds)]
    if args.episodes is not None:
        cmd += ["--episodes", str(args.episodes)]
    if args.runs is not None:
        cmd += ["--runs", str(args.runs)]
    if args.data:
        cmd += ["--data", *(str(d) for d in args.data)]
    return cmd


def _wait(procs: list[subprocess.Popen], t0: float) -> list[int]:
    """Wait for every process, printing each one's end; return the exit statuses."""
    codes: dict[int, int] = {}
    while True:
        for i, p in enumerate(procs):
            if i not in codes and (rc := p.poll()) is not None:
                codes[i] = rc
                print(f"[{time.monotonic() - t0:6.0f}s] part{i} exited with {rc}", flush=True)
        if len(codes) == len(procs):
            return [codes[i] for i in range(len(procs))]
        time.sleep(0.5)


def run_jobs(args: argparse.Namespace, rows: Sequence[Row], n: int) -> int:
    """Run ``rows`` in ``n`` parallel bench processes and merge their results.

    Args:
        args: Parsed ``landcover bench omniglot`` options (forwarded to every part).
        rows: Selected rows in table order.
        n: Number of processes (clamped by :func:`partition_rows`).

    Returns:
        0 if every part exited with 0, else 1 (the merged report is still written from
        the parts that wrote results).
    """
    names = list(dict.fromkeys(r.name for r in rows))
    rows = [next(r for r in rows if r.name == name) for name in names]
    cost = partial(estimate_cost, budget=resolve_budget(args), eval_only=args.eval_only)
    groups = partition_rows(rows, n, cost)
    if not groups:
        print("error: no rows selected")
        return 1
    parts_dir = args.out / "parts"
    parts_dir.mkdir(parents=True, exist_ok=True)
    jsons = [parts_dir / f"part{i}.json" for i in range(len(groups))]
    logs = [parts_dir / f"part{i}.log" for i in range(len(groups))]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    print(f"{len(groups)} parallel parts, output of each in {parts_dir}/part<i>.log:")
    t0 = time.monotonic()
    procs: list[subprocess.Popen] = []
    try:
        for i, group in enumerate(groups):
            jsons[i].unlink(missing_ok=True)  # never merge a previous run's part
            cmd = child_command(args, [r.name for r in group], jsons[i])
            print(f"  part{i} (~{cost(group):.0f} CPU-s): {', '.join(r.name for r in group)}")
            with logs[i].open("w") as log:
                log.write(shlex.join(cmd) + "\n")
                log.flush()
                procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env))
        codes = _wait(procs, t0)
    except BaseException:  # Ctrl-C or a failed start: stop the parts already started
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            p.wait()
        raise
    ok = True
    for i, (rc, group) in enumerate(zip(codes, groups)):
        if rc != 0:
            ok = False
            print(f"part{i} ({', '.join(r.name for r in group)}) failed with exit status {rc}")
        if not jsons[i].exists():
            ok = False
            print(f"part{i} wrote no results ({jsons[i]} missing); see {logs[i]}")
    present = [p for p in jsons if p.exists()]
    if not present:
        print("error: no part wrote results, nothing to merge")
        return 1
    extra = {"jobs": len(groups), "total_seconds": round(time.monotonic() - t0, 1)}
    json_path = args.json or args.out / "omniglot.json"
    status = merge_files(present, names, json_path, extra)
    print(f"models in {args.out / 'models'}; part logs in {parts_dir}")
    return 0 if ok and status == 0 else 1
