"""The figure of ``landcover bench predict``: engines, the vector trade-off, memory.

Three panels from the bench's JSON: throughput of each engine/window case on the crop
(with its agreement with the exact map), polygons against pixel agreement for each
minimum mapping unit, and peak memory growth against raster height.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot(result: dict[str, Any], out: str | Path) -> Path:
    """Write the three-panel PNG of a bench result; returns ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    eng = result.get("engines", [])
    if eng:
        ax = axes[0]
        labels = [f"{r['case']}\n{r['engine']} {r['precision']} w{r['window']}" for r in eng]
        bars = ax.barh(labels, [r["px_per_s"] / 1e3 for r in eng], color="#3b528b")
        for bar, r in zip(bars, eng):
            ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2,
                    f" {r['agreement_with_exact']:.4f}", va="center", fontsize=8)  # fmt: skip
        ax.set_xlabel("thousand px/s (label: agreement with the exact map)")
        ax.invert_yaxis()
        ax.tick_params(axis="y", labelsize=7)
        sc = result.get("scene")
        if sc:
            ax.set_title(f"scene {sc['raster']}: {sc['seconds']:.0f} s ({sc['precision']})")
    vec = result.get("vectors")
    if vec:
        ax = axes[1]
        for v, label in ((vec, "trained model"), (vec.get("speckle"), "untrained (speckle)")):
            if not v:
                continue
            rows = v["rows"]
            ax.plot([r["polygons"] for r in rows], [r["pixel_agreement"] for r in rows], "o",
                    label=label)  # fmt: skip
            for r in rows:
                ax.annotate(f"{r['min_area_px']}/{r['simplify_px']:g}",
                            (r["polygons"], r["pixel_agreement"]), fontsize=6)  # fmt: skip
        ax.legend(fontsize=7, title="labels: min area px / simplify px", title_fontsize=7)
        ax.set_xscale("log")
        ax.axhline(0.97, color="grey", ls="--", lw=0.8)
        ax.set_xlabel("polygons (log)")
        ax.set_ylabel("pixel agreement of rasterised polygons")
        ax.set_title(f"vector output of the {vec['map']} map")
    mem = [r for r in result.get("memory", []) if r["raster"] != "-"]
    if mem:
        ax = axes[2]
        heights = [int(r["raster"].split("x")[1]) for r in mem]
        ax.plot(heights, [r["growth_mb"] for r in mem], "o-", label="peak growth")
        ax.plot(heights, [r["in_memory_need_mb"] for r in mem], "s--", label="in-memory need")
        ax.set_xlabel("raster rows")
        ax.set_ylabel("MB")
        ax.legend()
        ax.set_title("memory of the fast path")
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
