"""The few-shot report: ``report.md``, ``metrics.json`` and PNG plots.

Plots: mIoU against the number of shots per method (with 95% intervals), and for a few
query tiles the image, the truth and each method's map side by side. Files are written
atomically (temporary file, then rename), so a report folder never holds half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap
from torch import Tensor

from landcover.atomic import atomic_write_text
from landcover.evaluation.fewshot import FewShotResult
from landcover.evaluation.metrics import SCORE_NAMES, mean_interval

#: File names inside the report folder.
REPORT_MD, METRICS_JSON, CURVE_PNG, MAPS_PNG = (
    "report.md",
    "metrics.json",
    "miou_vs_shots.png",
    "maps.png",
)

_LABELS = {"miou": "mIoU", "accuracy": "overall accuracy", "kappa": "Cohen's kappa"}


def _save_figure(fig: Any, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        plt.close(fig)


def plot_curves(result: FewShotResult, path: Path, score: str = "miou") -> None:
    """Plot a score against the number of shots, one line per method, with 95% intervals."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for method in result.methods:
        ks = result.shots
        iv = [mean_interval(result.scores[method][k][score]) for k in ks]
        mean = np.array([i.mean for i in iv])
        ax.plot(ks, mean, marker="o", label=method)
        ax.fill_between(ks, [i.low for i in iv], [i.high for i in iv], alpha=0.2)
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_xticks(result.shots, [str(k) for k in result.shots])
    ax.set_xlabel("labeled tiles of the new region (shots)")
    ax.set_ylabel(_LABELS.get(score, score))
    ax.set_title(f"{_LABELS.get(score, score)} on held-out regions (95% intervals)")
    ax.grid(alpha=0.3)
    ax.legend()
    _save_figure(fig, path)


def _rgb(image: Tensor, bands: Sequence[int]) -> np.ndarray:
    """A 2-98 percentile stretched RGB view of a normalised ``(C, H, W)`` tile."""
    x = image.detach().float().cpu().numpy()
    chosen = [b for b in bands if b < x.shape[0]] or [0]
    rgb = np.stack([x[b] for b in (chosen * 3)[:3]], axis=-1)
    lo, hi = np.percentile(rgb, 2), np.percentile(rgb, 98)
    return np.clip((rgb - lo) / max(hi - lo, 1e-6), 0, 1)


def plot_maps(
    result: FewShotResult,
    path: Path,
    class_names: Sequence[str],
    colors: Sequence[Sequence[int]],
    rgb_bands: Sequence[int] = (0, 1, 2),
    ignore_index: int = 255,
    max_rows: int = 4,
) -> None:
    """Image, truth and each method's map side by side for a few query tiles."""
    by_shots: dict[int, list[dict[str, Any]]] = {}
    for ex in result.examples:
        by_shots.setdefault(int(ex["shots"]), []).append(ex)
    # round-robin over the shot counts, so 1-shot and many-shot tiles both appear
    rows = [ex for group in zip(*by_shots.values()) for ex in group][:max_rows]
    rows = rows or result.examples[:max_rows]
    if not rows:
        return
    n = len(class_names)
    palette = np.array([list(c)[:3] for c in colors][:n], dtype=float) / 255.0
    cmap = ListedColormap(np.vstack([palette, [[0.0, 0.0, 0.0]]]))
    methods = list(rows[0]["maps"])
    cols = 2 + len(methods)
    fig, axes = plt.subplots(len(rows), cols, figsize=(2.2 * cols, 2.3 * len(rows)), squeeze=False)
    for r, ex in enumerate(rows):

        def show(c: int, m: Tensor, title: str, ax_row: Any = axes[r]) -> None:
            a = m.detach().cpu().numpy().astype(int)
            a = np.where(a == ignore_index, n, np.clip(a, 0, n))
            ax_row[c].imshow(a, cmap=cmap, vmin=0, vmax=n, interpolation="nearest")
            ax_row[c].set_title(title, fontsize=8)

        axes[r][0].imshow(_rgb(ex["image"], rgb_bands))
        axes[r][0].set_title(f"{ex.get('region', '')} {ex['shots']}-shot", fontsize=8)
        show(1, ex["truth"], "truth")
        for c, m in enumerate(methods, start=2):
            show(c, ex["maps"][m], m)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    handles = [plt.Rectangle((0, 0), 1, 1, color=palette[i]) for i in range(len(palette))]
    fig.legend(handles, list(class_names), loc="lower center", ncol=min(n, 6), fontsize=8)
    fig.subplots_adjust(bottom=0.08)
    _save_figure(fig, path)


def markdown_table(result: FewShotResult, score: str = "miou") -> str:
    """A Markdown table of ``score`` (mean ± 95% half-width) per method and shot count."""
    head = "| method | " + " | ".join(f"{k}-shot" for k in result.shots) + " |"
    sep = "|---|" + "---|" * len(result.shots)
    lines = [head, sep]
    for m in result.methods:
        cells = [str(mean_interval(result.scores[m][k][score])) for k in result.shots]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired_table(result: FewShotResult, method: str, references: Sequence[str]) -> str:
    """Markdown table of paired mIoU differences ``method - reference`` with 95% intervals."""
    head = "| comparison | " + " | ".join(f"{k}-shot" for k in result.shots) + " |"
    lines = [head, "|---|" + "---|" * len(result.shots)]
    for ref in references:
        d = result.paired(method, ref)
        cells = [
            f"{d[k]['mean']:+.3f} [{d[k]['low']:+.3f}, {d[k]['high']:+.3f}]" for k in result.shots
        ]
        lines.append(f"| {method} − {ref} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(
    result: FewShotResult,
    out_dir: str | Path,
    *,
    class_names: Sequence[str],
    colors: Sequence[Sequence[int]],
    main_method: str | None = None,
    title: str = "Few-shot land-cover segmentation on held-out regions",
    notes: Sequence[str] = (),
    rgb_bands: Sequence[int] = (0, 1, 2),
    ignore_index: int = 255,
) -> dict[str, Path]:
    """Write ``report.md``, ``metrics.json`` and the PNG plots into ``out_dir``.

    Args:
        result: Few-shot scores.
        out_dir: Report folder (created).
        class_names: Class names, index order.
        colors: RGB colours per class (0-255).
        main_method: Method compared (paired) against every other; default the first.
        title: Heading of the report.
        notes: Extra Markdown lines (settings, timings) placed under the heading.
        rgb_bands: Band indices shown as RGB in the map figure.
        ignore_index: Value of unlabeled pixels.

    Returns:
        ``{"report", "metrics", "curve", "maps"}`` -> written paths.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    main = main_method or result.methods[0]
    if main not in result.scores:
        raise KeyError(f"unknown main method {main!r}; evaluated: {result.methods}")
    others = [m for m in result.methods if m != main]
    paths = {
        k: out / v
        for k, v in zip(
            ("report", "metrics", "curve", "maps"), (REPORT_MD, METRICS_JSON, CURVE_PNG, MAPS_PNG)
        )
    }
    payload = result.to_json()
    payload["paired_miou"] = {
        r: {str(k): v for k, v in result.paired(main, r).items()} for r in others
    }
    payload["main_method"] = main
    atomic_write_text(paths["metrics"], json.dumps(payload, indent=2, allow_nan=True))
    plot_curves(result, paths["curve"])
    plot_maps(result, paths["maps"], class_names, colors, rgb_bands, ignore_index)
    md = [f"# {title}", "", *notes, ""]
    for score in SCORE_NAMES:
        md += [
            f"## {_LABELS[score]} (mean ± 95% interval over tasks)",
            "",
            markdown_table(result, score),
            "",
        ]
    if others:
        md += [
            f"## Paired mIoU differences, {main} minus each baseline (same tasks, 95% interval)",
            "",
            paired_table(result, main, others),
            "",
        ]
    md += [
        "## Plots",
        "",
        f"![mIoU against shots]({CURVE_PNG})",
        "",
        f"![query tiles: image, truth, maps]({MAPS_PNG})",
        "",
    ]
    atomic_write_text(paths["report"], "\n".join(md))
    return paths
