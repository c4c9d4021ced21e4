"""Table and figure of ``landcover bench strokes`` (see :mod:`landcover.bench.strokes`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

ADAPT_ROWS = ("none", "full masks", "strokes", "points")
TRAIN_COLS = ("full masks", "strokes")


def table(results: dict[str, Any]) -> str:
    """Markdown table of mIoU (95 % interval) and labeled share of pixels.

    One row per (held-out region, adaptation support), one column per meta-training support.
    """
    lines = [
        "| held-out region | adapt from | labeled px | meta-trained on full masks "
        "| meta-trained on strokes |",
        "|---|---|---:|---:|---:|",
    ]
    folds = list(results)
    for fold in [*folds, "mean"]:
        for row in ADAPT_ROWS:
            cells = []
            for col in TRAIN_COLS:
                if fold == "mean":
                    m = np.mean([results[f][col][row]["miou"] for f in folds])
                    cells.append(f"{m:.3f}")
                else:
                    r = results[fold][col][row]
                    cells.append(f"{r['miou']:.3f} [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}]")
            shares = [results[f][TRAIN_COLS[0]][row]["labeled_fraction"] for f in folds]
            share = (
                np.mean(shares)
                if fold == "mean"
                else results[fold][TRAIN_COLS[0]][row]["labeled_fraction"]
            )
            shown = "–" if row == "none" else f"{100 * share:.1f} %"
            lines.append(f"| {fold} | {row} | {shown} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> Path:
    """Grouped bars: mIoU per adaptation support, for both meta-training supports."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folds = list(results)
    fig, axes = plt.subplots(1, len(folds), figsize=(5 * len(folds), 3.8), squeeze=False)
    x = np.arange(len(ADAPT_ROWS))
    for ax, fold in zip(axes[0], folds):
        for j, col in enumerate(TRAIN_COLS):
            rows = [results[fold][col][r] for r in ADAPT_ROWS]
            means = np.array([r["miou"] for r in rows])
            err = np.array([[m - r["ci95"][0], r["ci95"][1] - m] for m, r in zip(means, rows)]).T
            ax.bar(x + (j - 0.5) * 0.38, means, 0.38, yerr=err, capsize=3,
                   label=f"meta-trained on {col}")  # fmt: skip
        ax.set_xticks(x, ADAPT_ROWS)
        ax.set_xlabel("adapted from")
        ax.set_ylabel("query mIoU")
        ax.set_title(f"held-out {fold}")
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(loc="lower right", fontsize=8)
    fig.suptitle("Dubai aerial: adapting from painted strokes vs full masks (MAML++)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path
