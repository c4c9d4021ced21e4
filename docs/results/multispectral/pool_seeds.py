"""Pool several ``bench regions`` runs (e.g. seed 0, and seeds 1-2) task by task.

    python docs/results/multispectral/pool_seeds.py run/metrics.json run/seeds_1_2/metrics.json \
        --out run/pooled_seeds.json

Every run scores every method on the same tasks, so the per-task lists of all runs are
concatenated and compared pairwise with the bench's own interval
(:func:`landcover.evaluation.metrics.paired_difference`). Prints mean mIoU and accuracy per
method and the paired mIoU margins of MAML++ over every other row; writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from landcover.evaluation.metrics import mean_interval, paired_difference

MAIN = "MAML++"


def pool(paths: list[Path]) -> dict[str, Any]:
    """Means, intervals and paired margins over the tasks of every ``metrics.json``."""
    runs = [json.loads(p.read_text(encoding="utf-8"))["per_task"] for p in paths]
    methods = list(runs[0])
    shots = list(runs[0][MAIN])
    scores = {
        m: {k: {s: [v for r in runs for v in r[m][k][s]] for s in ("miou", "accuracy")}
            for k in shots}
        for m in methods
    }  # fmt: skip
    return {
        "runs": [str(p) for p in paths],
        "tasks_per_shot": len(scores[MAIN][shots[0]]["miou"]),
        "mean": {
            m: {
                k: {s: mean_interval(v).as_dict() for s, v in by.items()}
                for k, by in scores[m].items()
            }
            for m in methods
        },
        "paired_miou": {
            m: {
                k: paired_difference(scores[MAIN][k]["miou"], scores[m][k]["miou"]).as_dict()
                for k in shots
            }
            for m in methods
            if m != MAIN
        },
    }


def main() -> None:
    """Print the pooled tables; write them to ``--out`` when given."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("metrics", type=Path, nargs="+", help="metrics.json of bench regions")
    parser.add_argument("--out", type=Path, default=None, help="JSON to write")
    args = parser.parse_args()
    pooled = pool(args.metrics)
    print(f"{pooled['tasks_per_shot']} paired tasks per shot count")
    for m, by in pooled["mean"].items():
        cells = "  ".join(
            f"{k}: {v['miou']['mean']:.3f} (acc {v['accuracy']['mean']:.3f})" for k, v in by.items()
        )
        print(f"{m:>22}  {cells}")
    for m, by in pooled["paired_miou"].items():
        cells = "  ".join(
            f"{k}: {d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]" for k, d in by.items()
        )
        print(f"{MAIN} − {m:>20}  {cells}")
    if args.out is not None:
        args.out.write_text(json.dumps(pooled, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
