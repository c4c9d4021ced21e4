"""``landcover bench omniglot``: every learner family on real Omniglot characters.

Data: the Omniglot repository's ``images_background_small1.zip`` and
``images_background_small2.zip`` (MIT licence), de-duplicated by alphabet and character:
242 characters of 8 alphabets, 20 drawings each. Fixed split: the alphabets
:data:`~landcover.tasks.omniglot.DEFAULT_TEST_ALPHABETS` (Early_Aramaic, Tagalog; 39
characters) are held out for testing, without rotations; the other 6 alphabets (203
characters) with 90/180/270-degree rotations as new classes (812 classes) are for
meta-training. Every learner is trained once on a mix of the four settings and evaluated
on 5/20-way x 1/5-shot test episodes (the same episodes for all) with 95% intervals;
``--runs`` adds Lake et al.'s 20 one-shot runs. Trained models are saved as safetensors
under ``--out`` (``models/<row>.safetensors`` + ``.json``); ``--eval-only`` reloads them.

Rows are the module-level list :data:`ROWS`; another area adds a learner with one line,
``ROWS.append(Row("svm", "MetaOptNet-SVM", "closed-form", "metaoptnet_svm"))``, for any
name of :mod:`landcover.meta.registry` (``backbone="classifier"`` for learners that adapt a
classifier network, ``"embedding"`` for learners that take an embedding network).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from landcover.bench.omniglot.baselines import NearestNeighbour, PretrainedHead, pretrain
from landcover.bench.omniglot.core import (
    SETTINGS,
    Budget,
    evaluate,
    evaluate_runs,
    meta_train,
)
from landcover.bench.omniglot.rows import (
    ANCHORS,
    BUDGETS,
    DATA_FILES,
    DEFAULT_DATA,
    MAX_WAY,
    PAPER_ITERATIONS,
    ROWS,
    Row,
)
from landcover.device import check_device
from landcover.meta.protocol import Learner
from landcover.meta.registry import build_learner
from landcover.models.conv4 import Conv4
from landcover.tasks.omniglot import DEFAULT_TEST_ALPHABETS, load_omniglot, with_rotations
from landcover.tasks.omniglot_augment import AffineJitter

BENCH_NAME = "omniglot"
BENCH_HELP = "few-shot classification on real Omniglot: every learner, 5/20-way 1/5-shot"


def build_row(row: Row) -> tuple[Learner, nn.Module]:
    """The learner of a row and the Conv-4 it wraps."""
    if row.backbone not in ("embedding", "classifier"):
        raise ValueError(f"row {row.name}: backbone must be 'embedding' or 'classifier'")
    model = Conv4(num_classes=MAX_WAY if row.backbone == "classifier" else 0)
    if row.learner == "pretrain_head":
        return PretrainedHead(model, **row.options), model
    if row.learner == "pretrain_nn":
        return NearestNeighbour(model), model
    return build_learner(row.learner, model, nn.CrossEntropyLoss(), **row.options), model


def _atomic_write(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_model(learner: Learner, row: Row, info: dict[str, Any], out: Path) -> Path:
    """Write ``models/<row>.safetensors`` (state dict) and ``models/<row>.json``."""
    tensors = {k: v.detach().contiguous().clone() for k, v in learner.state_dict().items()}
    path = out / "models" / f"{row.name}.safetensors"
    _atomic_write(path, lambda tmp: save_file(tensors, tmp))
    meta = {"row": asdict(row), "train": info}
    _atomic_write(
        path.with_suffix(".json"), lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=2))
    )
    return path


def load_model(learner: Learner, row: Row, out: Path) -> dict[str, Any]:
    """Load a saved row; return its training info.

    Raises:
        FileNotFoundError: If the row was never trained into ``out``.
    """
    path = out / "models" / f"{row.name}.safetensors"
    if not path.exists():
        raise FileNotFoundError(
            f"no trained model {path}; run 'landcover bench omniglot "
            f"--out {out}' without --eval-only first"
        )
    learner.load_state_dict(load_file(str(path)))
    return json.loads(path.with_suffix(".json").read_text()).get("train", {})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``landcover bench omniglot``."""
    parser.add_argument("--quick", action="store_true", help="tiny budget (CI, < 2 minutes)")
    parser.add_argument(
        "--budget",
        choices=["full", "paper"],
        default="full",
        help="full: CPU-seconds caps (default); paper: each row's paper iterations (GPU)",
    )
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="torch device")
    parser.add_argument("--json", type=Path, help="results JSON (default OUT/omniglot.json)")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("runs/omniglot"),
        help="output folder: models/, omniglot.json, omniglot.png",
    )
    parser.add_argument(
        "--runs",
        type=Path,
        help="Lake et al.'s all_runs.zip (or folder): also the 20 one-shot runs",
    )
    parser.add_argument(
        "--data",
        type=Path,
        nargs="+",
        help=f"Omniglot zips/folders (default {DEFAULT_DATA}/{{{','.join(DATA_FILES)}}})",
    )
    parser.add_argument(
        "--eval-only",
        action="store_true",
        help="reload the models saved in OUT/models instead of training",
    )
    parser.add_argument("--rows", help=f"comma-separated subset of {[r.name for r in ROWS]}")
    parser.add_argument(
        "--train-seconds", type=float, help="override the per-learner training cap (CPU-seconds)"
    )
    parser.add_argument("--episodes", type=int, help="override the test episodes per setting")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        metavar="JSON",
        help="merge results of runs over disjoint --rows (no training, no evaluation)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="run the rows in N parallel processes (one per CPU core, 1 thread each) and "
        "merge them; logs and part JSONs in OUT/parts/",
    )


def _check_paths(args: argparse.Namespace) -> str | None:
    """A plain-words problem with a path argument, or ``None``."""
    if args.runs is not None and not args.runs.exists():
        return (
            f"--runs {args.runs} does not exist; pass Lake et al.'s all_runs.zip or its "
            "unpacked folder (see data/README.md), or leave --runs out"
        )
    for path in args.data or []:
        if not path.exists():
            return f"--data {path} does not exist; pass the Omniglot zips or folders"
    return None


def _select_rows(spec: str | None) -> list[Row]:
    if not spec:
        return list(ROWS)
    names = [s.strip() for s in spec.split(",") if s.strip()]
    known = {r.name: r for r in ROWS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise KeyError(f"unknown row(s) {unknown}; valid: {list(known)}")
    return [known[n] for n in names]


def _train_or_load(
    row: Row, index: int, args: argparse.Namespace, budget: Budget, train: Any, cache: dict
) -> tuple[Learner, nn.Module, dict[str, Any]]:
    """Build a row's learner and train it (or reload it with ``--eval-only``); save it."""
    torch.manual_seed(args.seed + index)
    learner, model = build_row(row)
    learner.to(getattr(args, "device", "cpu"))
    if args.eval_only:
        return learner, model, load_model(learner, row, args.out)
    if row.family == "baseline":  # both baselines share one pretrained backbone
        if "state" not in cache:
            info = pretrain(model, model.feature_dim, train, budget, seed=args.seed)
            cache.update(state=model.state_dict(), info=info, owner=row.name)
        else:
            model.load_state_dict(cache["state"])
            info = {**cache["info"], "shared_with": cache["owner"]}
    else:
        iters = budget.max_iters
        if getattr(args, "budget", "full") == "paper" and not args.quick:
            iters = PAPER_ITERATIONS.get(row.name, budget.max_iters)
        rb = replace(
            budget,
            max_iters=iters,
            meta_batch=row.meta_batch or budget.meta_batch,
            train_seconds=budget.train_seconds * row.train_scale,
            train_wall_seconds=budget.train_wall_seconds * row.train_scale,
        )
        info = meta_train(
            learner,
            model,
            train,
            rb,
            lr=row.lr,
            seed=args.seed + index,
            settings=row.train_settings or SETTINGS,
            desc=row.name,
            augment=AffineJitter() if row.augment else None,
        )
    save_model(learner, row, info, args.out)
    return learner, model, info


def resolve_budget(args: argparse.Namespace) -> Budget:
    """The budget of a run: ``quick`` or ``full``, with ``--train-seconds``/``--episodes``."""
    budget = BUDGETS["quick" if args.quick else getattr(args, "budget", "full")]
    too_small = [(args.train_seconds, 0.0), (args.episodes, 0)]
    if any(value is not None and value <= least for value, least in too_small):
        raise ValueError("--train-seconds must be > 0 and --episodes >= 1")
    if args.train_seconds is not None:
        budget = replace(
            budget,
            train_seconds=args.train_seconds,
            train_wall_seconds=max(budget.train_wall_seconds, 4 * args.train_seconds),
        )
    if args.episodes is not None:
        budget = replace(budget, eval_episodes=args.episodes)
    return budget


def run(args: argparse.Namespace) -> int:
    """Train (or reload) every row, evaluate, print the table, write JSON and the plot.

    A row that fails is reported (``"error"`` in the JSON) and the others still run; the
    exit status is then 1. The JSON is rewritten after every row, so an interrupted run
    keeps its finished rows. ``--jobs N`` runs the rows in N processes instead
    (:func:`landcover.bench.omniglot.jobs.run_jobs`); ``--merge`` only merges JSONs. The
    plot is written next to the JSON (``.png``).
    """
    from landcover.bench.omniglot.report import merge_files, plot, print_table, write_json

    jobs = getattr(args, "jobs", 1)
    problem = _check_paths(args)
    if problem:
        print(f"error: {problem}")
        return 2
    try:
        check_device(getattr(args, "device", "cpu"))
    except ValueError as err:
        print(f"error: {err}")
        return 2
    if jobs < 1 or (jobs > 1 and args.merge):
        print("error: --jobs must be >= 1 and cannot be combined with --merge")
        return 2
    if args.merge:
        order = [r.name for r in ROWS]
        return merge_files(args.merge, order, args.json or args.out / "omniglot.json")
    rows = _select_rows(args.rows)
    budget = resolve_budget(args)
    if jobs > 1:
        from landcover.bench.omniglot.jobs import run_jobs

        return run_jobs(args, rows, jobs)
    torch.set_num_threads(max(1, args.threads))
    sources = args.data or [DEFAULT_DATA / f for f in DATA_FILES]
    t0, cpu0 = time.monotonic(), time.process_time()
    data = load_omniglot(sources)
    test = data.select_alphabets(DEFAULT_TEST_ALPHABETS)
    train = with_rotations(data.drop_alphabets(DEFAULT_TEST_ALPHABETS))
    runs = None
    if args.runs is not None:
        from landcover.tasks.omniglot_runs import load_runs

        runs = load_runs(args.runs)
    report: dict[str, Any] = {
        "benchmark": "omniglot",
        "mode": "quick" if args.quick else "full",
        "data": [str(s) for s in sources],
        "split": {
            "test_alphabets": list(DEFAULT_TEST_ALPHABETS),
            "test_classes": test.num_classes,
            "train_alphabets": train.alphabets,
            "train_classes": train.num_classes,
            "train_rotations": [0, 90, 180, 270],
        },
        "budget": asdict(budget),
        "settings": [f"{w}w{s}s" for w, s in SETTINGS],
        "threads": args.threads,
        "device": getattr(args, "device", "cpu"),
        "budget_name": "quick" if args.quick else getattr(args, "budget", "full"),
        "eval_only": bool(args.eval_only),
        "rows": [],
    }
    json_path = args.json or args.out / "omniglot.json"
    cache: dict[str, Any] = {}
    failed = []
    for i, row in enumerate(rows):
        entry: dict[str, Any] = {
            "name": row.name,
            "label": row.label,
            "family": row.family,
            "learner": row.learner,
            "options": row.options,
            "anchors": ANCHORS.get(row.name, {}),
            "accuracy": {},
        }
        t_row = time.monotonic()
        try:
            learner, model, entry["train"] = _train_or_load(row, i, args, budget, train, cache)
            t_eval, cpu_eval = time.monotonic(), time.process_time()
            seed = 10_000 + args.seed
            entry["accuracy"] = evaluate(learner, model, test, budget, seed=seed, desc=row.name)
            if runs is not None:
                entry["lake_runs"] = evaluate_runs(learner, model, runs)
            entry["eval_seconds"] = round(time.monotonic() - t_eval, 1)
            entry["train_seconds"] = entry["train"].get("seconds")
            entry["row_seconds"] = round(time.monotonic() - t_row, 1)
            entry["eval_cpu_seconds"] = round(time.process_time() - cpu_eval, 1)
        except Exception as exc:  # report the row, keep benchmarking the others
            entry["error"] = f"{type(exc).__name__}: {exc}"
            failed.append(row.name)
        report["rows"].append(entry)
        report["total_seconds"] = round(time.monotonic() - t0, 1)
        report["total_cpu_seconds"] = round(time.process_time() - cpu0, 1)
        write_json(report, json_path)
        summary = entry.get("error") or ", ".join(
            f"{k} {100 * v['accuracy']:.1f}±{100 * v['ci95']:.1f}"
            for k, v in entry["accuracy"].items()
        )
        print(f"[{time.monotonic() - t0:6.0f}s] {row.label}: {summary}", flush=True)
    png = plot(report, json_path.with_suffix(".png"))
    print_table(report)
    print(f"wrote {json_path} and {png}; models in {args.out / 'models'}")
    if failed:
        print(f"rows that failed: {failed} (see 'error' in {json_path})")
    return 1 if failed else 0
