r"""Probes behind the regions log (``docs/results/regions/README.md``), sessions 4 on.

Two questions the full bench is too slow to ask, on ``../shared/data/dubai-aerial``:

* ``budget``: how high does one method go on fold 1 (test Tile 1, validation Tile 2,
  training Tiles 3-4) with far more outer steps than the bench gives? ``--train oracle``
  trains on the test region's own tiles instead (the query tiles included): an upper
  reference for the network, not a few-shot result. Scores 8 test tasks at 1 and 5 shots,
  unadapted and adapted (fine-tuning rate/steps or MAML++ test steps chosen on validation).
* ``variant``: MAML++ with changed learner options on the *same* test tasks as the final
  run's seed (``dubai_final/metrics.json``), so its per-task margin over that run's
  pretrain+finetune row is paired.

Run from the repository root, under the CPU lock, e.g.::

    flock /tmp/landcover-cpu.lock .venv/bin/python docs/results/regions/probe.py \
        budget pretrain --epochs 30 --width 8 --train cross
    flock /tmp/landcover-cpu.lock .venv/bin/python docs/results/regions/probe.py \
        variant proto --seed 0 --folds 0,1,2,3 --options '{proto_init: true}'
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from lightning.pytorch import seed_everything

from landcover.bench.regions import config_settings, fold_splits
from landcover.bench.regions.core import (
    FoldDataModule,
    RegionsSettings,
    fit_options,
    grid_region,
)
from landcover.geo.datasets import load_regions
from landcover.tasks.scoring import score_task
from landcover.training.baselines import (
    choose_finetune,
    choose_steps,
    choose_steps_per_shot,
    fit_learner,
)

ROOT = Path("data/samples/dubai-aerial")
CLASSES = Path("configs/classes/dubai-aerial.yaml")
FINAL = Path("docs/results/regions/dubai_final/metrics.json")


def _regions(s: RegionsSettings) -> dict[str, Any]:
    raw = load_regions(ROOT, kind="folder", classes=CLASSES, cache=True)
    return {r.name: grid_region(r, s.tile_size) for r in sorted(raw, key=lambda r: r.name)}


def _mean_miou(learner: Any, dm: FoldDataModule, shots: int, steps: int | None, n: int) -> float:
    scores = [
        score_task(learner, dm.eval_task("test", i, shots=shots), steps, dm.num_classes,
                   dm.ignore_index)[0]["miou"]
        for i in range(n)
    ]  # fmt: skip
    return float(np.nanmean(scores))


def budget(args: argparse.Namespace) -> dict[str, Any]:
    """One method on fold 1 with ``--epochs`` x 20 outer steps."""
    s = config_settings(Path("configs/folder.yaml"))
    s.epochs = args.epochs
    if args.width is not None:  # small U-Net only
        s.model_options = {**s.model_options, "width": args.width}
    s.learner_options.update(yaml.safe_load(args.options) or {})
    regions = _regions(s)
    names = list(regions)
    test, val = names[0], names[1]
    train = [regions[n] for n in names[2:]] if args.train == "cross" else [regions[test]]
    dm = FoldDataModule(train, [regions[val]], [regions[test]], s, 0)
    seed_everything(0, workers=True, verbose=False)
    t = time.perf_counter()
    run = Path(args.out) / f"budget_{args.method}_{args.train}"
    if args.method == "pretrain":
        options = fit_options(s, progress=False)
        module = fit_learner("pretrain", {}, dm, run, validate=False, **options)
        learner, grid = choose_finetune(
            "pretrain", module.learner.model, dm, rates=s.finetune_rates,
            steps=s.finetune_steps, tasks=s.tuning_tasks,
        )  # fmt: skip
        steps = None
    else:
        module = fit_learner("mamlpp", s.learner_options, dm, run, **fit_options(s, progress=False))
        learner = module.learner
        steps, grid = choose_steps(learner, dm, s.maml_steps, tasks=s.tuning_tasks)
    out: dict[str, Any] = {"method": args.method, "train": args.train, "epochs": args.epochs,
                           "width": args.width, "train_s": time.perf_counter() - t,
                           "validation_grid": grid}  # fmt: skip
    for k in (1, 5):
        out[f"unadapted_{k}"] = _mean_miou(learner, dm, k, 0, args.tasks)
        out[f"adapted_{k}"] = _mean_miou(learner, dm, k, steps, args.tasks)
    return out


def variant(args: argparse.Namespace) -> dict[str, Any]:
    """MAML++ with ``--options`` on the final run's test tasks of ``--seed``."""
    s = config_settings(Path("configs/folder.yaml"))
    s.learner_options.update(yaml.safe_load(args.options) or {})
    if args.epochs is not None:
        s.epochs = args.epochs
    inner = int(s.learner_options.get("steps", 5))
    s.maml_steps = sorted({0, 1, inner, 2 * inner})
    if args.maml_steps:  # test-step candidates, chosen per shot count as the bench does
        s.maml_steps = [int(n) for n in args.maml_steps.split(",")]
    regions = _regions(s)
    final = json.loads(args.final.read_text(encoding="utf-8"))
    order = [(r["seed"], r["fold"]) for r in final["folds"]]
    per_run = final["meta"]["tasks_per_shot"]
    wanted = [int(x) for x in args.folds.split(",")]
    out: dict[str, Any] = {"label": args.label, "options": args.options, "folds": {}}
    for j, (test, val) in enumerate(fold_splits(list(regions), None)):
        if j not in wanted:
            continue
        train = [r for n, r in regions.items() if n not in test and n not in val]
        dm = FoldDataModule(train, [regions[n] for n in val], [regions[n] for n in test], s,
                            args.seed)  # fmt: skip
        seed_everything(args.seed, workers=True, verbose=False)
        t = time.perf_counter()
        run = Path(args.out) / f"{args.label}_s{args.seed}_f{j}"
        maml = fit_learner("mamlpp", s.learner_options, dm, run, **fit_options(s, progress=False))
        if args.maml_steps:
            per_shot, grid = choose_steps_per_shot(maml.learner, dm, s.maml_steps,
                                                   shots=final["meta"]["shots"],
                                                   tasks=s.tuning_tasks)  # fmt: skip
        else:
            steps, grid = choose_steps(maml.learner, dm, s.maml_steps, tasks=s.tuning_tasks)
            per_shot = {int(k): steps for k in final["meta"]["shots"]}
        at = order.index((args.seed, j)) * per_run
        res: dict[str, Any] = {"train_s": time.perf_counter() - t, "steps": per_shot,
                               "grid": grid}  # fmt: skip
        for k in final["meta"]["shots"]:
            ours = [
                score_task(maml.learner, dm.eval_task("test", i, shots=k), per_shot[int(k)],
                           dm.num_classes, dm.ignore_index)[0]["miou"]
                for i in range(per_run)
            ]  # fmt: skip
            base = {m: final["per_task"][m][str(k)]["miou"][at : at + per_run]
                    for m in ("MAML++", "pretrain+finetune", "unadapted", "rf")
                    if m in final["per_task"]}  # fmt: skip
            res[str(k)] = {
                "variant": float(np.mean(ours)),
                **{f"final_{m}": float(np.mean(v)) for m, v in base.items()},
                "margin_vs_pretrain": float(np.mean(np.subtract(ours, base["pretrain+finetune"]))),
            }
        out["folds"][str(j)] = res
        print(json.dumps({j: res}), flush=True)
    shots = [str(k) for k in final["meta"]["shots"]]
    keys = [key for key in next(iter(out["folds"].values()))[shots[0]]]
    for key in keys:
        out[f"mean_{key}"] = {k: float(np.mean([f[k][key] for f in out["folds"].values()]))
                              for k in shots}  # fmt: skip
    return out


def main() -> None:
    """Parse the command line, run one probe, print its JSON (and write ``--json``)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="probe", required=True)
    b = sub.add_parser("budget")
    b.add_argument("method", choices=["pretrain", "mamlpp"])
    b.add_argument("--epochs", type=int, default=30)
    b.add_argument("--width", type=int, default=None, help="small U-Net width")
    b.add_argument("--tasks", type=int, default=8, help="test tasks per shot count")
    b.add_argument("--options", default="{}", help="YAML mapping of MAML++ options")
    b.add_argument("--train", choices=["cross", "oracle"], default="cross")
    v = sub.add_parser("variant")
    v.add_argument("label")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--folds", default="0,1,2,3")
    v.add_argument("--options", default="{}", help="YAML mapping of MAML++ options")
    v.add_argument("--epochs", type=int, default=None, help="x 20 outer steps (config's)")
    v.add_argument(
        "--maml-steps",
        default=None,
        help="MAML++ test-step candidates, e.g. 1,3,6,12,24,48 (chosen per shot)",
    )
    v.add_argument("--final", type=Path, default=FINAL, help="metrics.json to pair with")
    for q in (b, v):
        q.add_argument("--out", default="/tmp/regions_probe", help="run folders")
        q.add_argument("--json", type=Path, default=None, help="write the result here")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from landcover.models.frozen_encoder import feature_cache

    with feature_cache():  # as bench regions: each tile passes the frozen encoder once
        result = budget(args) if args.probe == "budget" else variant(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
