"""Report of ``landcover bench regions``: pooled tables plus per-fold and per-seed margins.

Per-task scores of every (seed, fold) run are concatenated method by method (the same tasks
for every method, so the pooled comparison stays paired; every fold has the same number of
tasks, so pooling equals averaging over folds). The shared report writer
(:func:`landcover.evaluation.report.write_report`) draws the tables and plots; this module
adds the folds, the seeds' spread and the target check to ``report.md`` and
``metrics.json``.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from landcover.evaluation.fewshot import FewShotResult
from landcover.evaluation.no_step_rows import DESCRIPTIONS, PROTOTYPES, UNADAPTED
from landcover.evaluation.report import atomic_write_text, markdown_table, write_report

MAIN, REFERENCE = "MAML++", "pretrain+finetune"


def merge_results(results: Sequence[FewShotResult]) -> FewShotResult:
    """Concatenate per-task scores of several runs (same methods and shots)."""
    first = results[0]
    merged = FewShotResult(
        scores={
            m: {k: {s: [] for s in by_score} for k, by_score in by_shot.items()}
            for m, by_shot in first.scores.items()
        },
        meta={"runs": len(results), **first.meta},
    )
    for r in results:
        for m, by_shot in r.scores.items():
            for k, by_score in by_shot.items():
                for s, values in by_score.items():
                    merged.scores[m][k][s].extend(values)
        merged.examples.extend(r.examples[:2])
    return merged


def _margins(result: FewShotResult) -> dict[int, dict[str, float | int]]:
    return result.paired(MAIN, REFERENCE)


def write_regions_report(
    pooled: FewShotResult,
    runs: Sequence[dict[str, Any]],
    out: Path,
    *,
    scheme: Any,
    settings: dict[str, Any],
    seeds: Sequence[int],
    wall_seconds: float,
    root: str,
    target: dict[str, float],
) -> dict[str, Any]:
    """Write ``report.md``, ``metrics.json`` and the plots; return a summary.

    ``target``: ``miou_5shot`` (MAML++'s least mIoU at 5 shots), ``vs_rf`` and
    ``vs_pretrain`` (least paired margins at 1 and 5 shots over the random forest and over
    pretrain+finetune); MAML++ must also be at or above its no-step rows at every shot
    (``unadapted`` and, for Proto-MAML, ``prototypes (0 steps)``).
    """
    margins = _margins(pooled)
    checks = target_checks(pooled, target)
    met = all(c["met"] for c in checks)
    by_seed: dict[int, list[FewShotResult]] = {}
    for r in runs:
        by_seed.setdefault(int(r["seed"]), []).append(r["result"])
    seed_margins = {
        str(seed): {str(k): v["mean"] for k, v in _margins(merge_results(rs)).items()}
        for seed, rs in by_seed.items()
    }
    spread = {}
    for k in pooled.shots:
        values = [float(m[str(k)]) for m in seed_margins.values()]
        spread[str(k)] = {
            "mean": statistics.fmean(values),
            "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values),
            "max": max(values),
        }
    fold_rows = []
    for r in runs:
        m = _margins(r["result"])
        s = r["result"].summary()
        fold_rows.append({
            "seed": r["seed"], "fold": r["fold"], "test": r["info"]["test"],
            "val": r["info"]["val"], "choices": r["info"]["choices"],
            "timings": r["info"]["timings"],
            "miou": {meth: {str(k): s[meth][k]["miou"]["mean"] for k in s[meth]} for meth in s},
            "margin": {str(k): v["mean"] for k, v in m.items()},
        })  # fmt: skip
    notes = [
        f"Dataset `{root}`; {len(runs) // max(1, len(seeds))} folds × seeds {list(seeds)}; "
        f"{settings['tasks_per_shot']} test tasks per shot count and fold, every method on "
        "the same tasks; folds and seeds pooled task by task.",
        f"Tiles {settings['tile_size']} px; {settings['epochs']} epochs × "
        f"{settings['batches_per_epoch']} outer steps × {settings['meta_batch_size']} tasks for "
        f"every trained method; {settings['arch']} {settings['model_options']}; MAML++ "
        f"{settings['learner_options']}.",
        f"Fine-tuning rates {settings['finetune_rates']} × steps {settings['finetune_steps']} "
        f"and MAML++ test steps {settings['maml_steps']} chosen on the validation region of "
        "each fold (never the test region).",
        *(
            f"Row `{row}`: {DESCRIPTIONS[row]}."
            for row in (UNADAPTED, PROTOTYPES)
            if row in pooled.scores
        ),
        f"Wall time {wall_seconds:.0f} s.",
        "Targets: "
        + "; ".join(
            f"{c['check']}: {c['value']:+.3f} ({'met' if c['met'] else 'NOT met'})" for c in checks
        )
        + f" — **{'all met' if met else 'NOT all met'}**.",
    ]
    paths = write_report(
        pooled, out, class_names=scheme.names, colors=scheme.colors, main_method=MAIN,
        title=f"Few-shot benchmark on held-out regions of {root}", notes=notes,
        ignore_index=scheme.ignore_index,
    )  # fmt: skip
    md = paths["report"].read_text(encoding="utf-8").split("\n## Plots")[0]
    md += "\n## Per fold (mean mIoU; margin = MAML++ − pretrain+finetune)\n\n"
    shots = pooled.shots
    md += "| seed | fold | test | val | " + " | ".join(f"{k}-shot margin" for k in shots)
    md += " | choices | seconds |\n|" + "---|" * (6 + len(shots)) + "\n"
    for f in fold_rows:
        cells = " | ".join(f"{f['margin'][str(k)]:+.3f}" for k in shots)
        secs = sum(f["timings"].values())
        md += (f"| {f['seed']} | {f['fold']} | {', '.join(f['test'])} | {', '.join(f['val'])} "
               f"| {cells} | {f['choices']} | {secs:.0f} |\n")  # fmt: skip
    md += "\n## Spread over seeds (MAML++ − pretrain+finetune, pooled folds)\n\n"
    md += "| shots | mean | sd | min | max |\n|---|---|---|---|---|\n"
    for k, v in spread.items():
        md += f"| {k} | {v['mean']:+.3f} | {v['sd']:.3f} | {v['min']:+.3f} | {v['max']:+.3f} |\n"
    md += "\n## Plots\n\n![mIoU against shots](miou_vs_shots.png)\n\n"
    md += "![query tiles: image, truth, maps](maps.png)\n"
    atomic_write_text(paths["report"], md)
    payload = json.loads(paths["metrics"].read_text(encoding="utf-8"))
    payload.update(
        folds=fold_rows, seed_margins=seed_margins, seed_spread=spread, settings=settings,
        wall_seconds=wall_seconds, target={**target, "checks": checks, "met": met},
    )  # fmt: skip
    atomic_write_text(paths["metrics"], json.dumps(payload, indent=2, allow_nan=True))
    return {
        "report": str(paths["report"]),
        "margins": {str(k): v for k, v in margins.items()},
        "target_met": met,
        "checks": checks,
        "table": markdown_table(pooled),
    }


def target_checks(pooled: FewShotResult, target: dict[str, float]) -> list[dict[str, Any]]:
    """Each target as ``{"check", "value", "met"}`` (see :func:`write_regions_report`)."""
    summary = pooled.summary()
    checks: list[dict[str, Any]] = []
    five = summary[MAIN].get(5, {}).get("miou", {}).get("mean", float("nan"))
    checks.append({"check": f"MAML++ mIoU at 5 shots >= {target['miou_5shot']}",
                   "value": five, "met": five >= target["miou_5shot"]})  # fmt: skip
    for other, key in (("rf", "vs_rf"), (REFERENCE, "vs_pretrain")):
        if other not in summary:
            continue
        paired = pooled.paired(MAIN, other)
        for k in (1, 5):
            if k in paired:
                v = paired[k]["mean"]
                checks.append({"check": f"MAML++ − {other} at {k} shots >= +{target[key]}",
                               "value": v, "met": v >= target[key]})  # fmt: skip
    # Proto-MAML's unadapted model uses no support and is no usable map: its honest
    # no-step reference is the prototype classifier (landcover.evaluation.no_step_rows)
    for other in (PROTOTYPES, UNADAPTED):
        if other in summary:
            paired = pooled.paired(MAIN, other)
            worst = min(v["mean"] for v in paired.values())
            checks.append({"check": f"MAML++ − {other} at every shot count >= 0",
                           "value": worst, "met": worst >= 0})  # fmt: skip
    return checks
