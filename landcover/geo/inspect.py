"""``landcover data inspect``: what a dataset folder holds, per region, as a table and a picture.

For each region: number of tiles, tile sizes, bands, CRS and the class histogram (share of
pixels per class, and of ignored pixels). ``plot_regions`` draws one tile and its mask per
region (true-colour composite from B04/B03/B02 when present, else the first three bands,
2–98 % stretch) into a small PNG.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from rich.console import Console
from rich.table import Table

from landcover.geo.errors import MaskValueError, mismatch_summary
from landcover.geo.region import Region

#: Classes shown as one column each; larger schemes get a single list column.
MAX_CLASS_COLUMNS = 8


@dataclass
class RegionSummary:
    """What one region holds.

    Attributes:
        name: Region name.
        tiles: Number of tiles.
        sizes: Distinct tile sizes as ``(H, W)``.
        bands: Band names.
        crs: CRS as text (``EPSG:xxxx`` when it has a code), ``"none"`` when not georeferenced.
        histogram: Pixel share per class name, plus ``"(ignore)"``.
    """

    name: str
    tiles: int
    sizes: list[tuple[int, int]]
    bands: tuple[str, ...]
    crs: str
    histogram: dict[str, float]


def summarize(region: Region) -> RegionSummary:
    """Summarise one region (reads every tile once)."""
    sizes: set[tuple[int, int]] = set()
    counts = np.zeros(region.scheme.num_classes + 1, dtype=np.int64)
    for sample in region:
        m = sample["mask"].numpy()
        sizes.add((int(m.shape[0]), int(m.shape[1])))
        ignored = m >= region.scheme.num_classes
        counts[-1] += int(ignored.sum())
        counts[:-1] += np.bincount(m[~ignored].ravel(), minlength=region.scheme.num_classes)
    total = max(int(counts.sum()), 1)
    names = [*region.scheme.names, "(ignore)"]
    if region.crs is None:
        crs = "none"
    else:
        epsg = region.crs.to_epsg()
        crs = f"EPSG:{epsg}" if epsg else region.crs.to_string()[:40]
    return RegionSummary(
        name=region.name,
        tiles=len(region),
        sizes=sorted(sizes),
        bands=region.band_names,
        crs=crs,
        histogram={n: float(c) / total for n, c in zip(names, counts)},
    )


def summary_table(summaries: Sequence[RegionSummary], title: str = "") -> Table:
    """A rich table, one row per region.

    With up to :data:`MAX_CLASS_COLUMNS` classes (plus ignore) each class gets a column of
    pixel percentages; with more, one column lists the classes present, largest first.
    """
    table = Table(title=title or None)
    table.add_column("region", no_wrap=True)
    for col in ("tiles", "size (W×H)", "bands", "CRS"):
        table.add_column(col)
    classes = list(summaries[0].histogram) if summaries else []
    wide = len(classes) <= MAX_CLASS_COLUMNS + 1
    if wide:
        for c in classes:
            table.add_column(f"{c} %", justify="right")
    else:
        table.add_column("classes (% of pixels)")
    for s in summaries:
        sizes = ", ".join(f"{w}×{h}" for h, w in s.sizes[:3]) + (" …" if len(s.sizes) > 3 else "")
        bands = f"{len(s.bands)} ({','.join(s.bands[:4])}{',…' if len(s.bands) > 4 else ''})"
        if wide:
            hist = [f"{100 * s.histogram[c]:.1f}" for c in classes]
        else:
            top = sorted(((v, c) for c, v in s.histogram.items() if v > 0), reverse=True)
            hist = [", ".join(f"{c} {100 * v:.1f}" for v, c in top)]
        table.add_row(s.name, str(s.tiles), sizes, bands, s.crs, *hist)
    return table


def print_summary(summaries: Sequence[RegionSummary], title: str = "", width: int = 160) -> None:
    """Print the summary table to stdout."""
    Console(width=width).print(summary_table(summaries, title))


def print_problems(problems: Sequence[Exception], width: int = 160) -> None:
    """Print every problem found (one row per file) to stderr.

    Masks with values or colours the class file lacks get a short row each (the values and
    their pixel counts); what they share (the class file, the values summed over all of
    them, what to do) follows the table once per class file (:func:`mismatch_summary`).
    """
    table = Table(title=f"{len(problems)} problem(s); fix them all, then run again")
    table.add_column("file", overflow="fold")
    table.add_column("problem", overflow="fold")
    for err in problems:
        path = getattr(err, "path", None)
        text = err.short if isinstance(err, MaskValueError) else str(err)
        if path is not None and text.startswith(f"{path}: "):
            text = text[len(f"{path}: ") :]
        table.add_row(str(path) if path is not None else "", text)
    console = Console(width=width, stderr=True)
    console.print(table)
    for paragraph in mismatch_summary(problems):
        console.print(paragraph, markup=False, highlight=False)


def composite(image: np.ndarray, band_names: Sequence[str]) -> np.ndarray:
    """``(H, W, 3)`` float in [0, 1] for display from a ``(C, H, W)`` image."""
    names = list(band_names)
    if all(b in names for b in ("B04", "B03", "B02")):
        idx = [names.index("B04"), names.index("B03"), names.index("B02")]
    elif image.shape[0] >= 3:
        idx = [0, 1, 2]
    else:
        idx = [0, 0, 0]
    rgb = image[idx].astype(np.float64)
    finite = np.isfinite(rgb)
    if not finite.any():
        return np.zeros((*rgb.shape[1:], 3))
    lo, hi = np.percentile(rgb[finite], 2), np.percentile(rgb[finite], 98)
    rgb = np.where(finite, rgb, lo)  # nodata (NaN) shows as the darkest colour
    return np.clip((rgb - lo) / max(hi - lo, 1e-9), 0, 1).transpose(1, 2, 0)


def plot_regions(regions: Sequence[Region], path: str | Path, max_regions: int = 16) -> Path:
    """Write a PNG with one tile (image and mask) per region, and a class legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    shown = list(regions)[:max_regions]
    per_row = min(4, len(shown))
    rows = int(np.ceil(len(shown) / per_row))
    fig, axes = plt.subplots(rows, 2 * per_row, figsize=(2 * per_row * 1.3, rows * 1.45 + 0.5))
    axes = np.atleast_2d(axes)
    for ax in axes.ravel():
        ax.axis("off")
    for i, region in enumerate(shown):
        sample = region[0]
        r, c = divmod(i, per_row)
        axes[r, 2 * c].imshow(composite(sample["image"].numpy(), region.band_names))
        axes[r, 2 * c].set_title(f"{region.name}\n{region.tiles[0].key}", fontsize=6)
        axes[r, 2 * c + 1].imshow(
            region.scheme.colorize(sample["mask"].numpy()), interpolation="nearest"
        )
        axes[r, 2 * c + 1].set_title("mask", fontsize=6)
    scheme = shown[0].scheme
    handles = [
        Patch(color=np.array(col) / 255, label=n) for n, col in zip(scheme.names, scheme.colors)
    ]
    fig.legend(
        handles=handles, loc="lower center", ncol=min(len(handles), 8), fontsize=6, frameon=False
    )
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    buf = io.BytesIO()
    fig.savefig(buf, dpi=72, format="png")
    plt.close(fig)
    # a 256-colour palette keeps the PNG small enough to commit
    Image.open(buf).convert("RGB").quantize(256).save(tmp, optimize=True)
    tmp.replace(path)
    return path
