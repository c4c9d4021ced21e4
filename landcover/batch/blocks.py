"""Cut a large scene into row blocks that map on different workers, and put them together.

The map of ``landcover predict`` blends overlapping windows (:mod:`~landcover.inference.
sliding`): a pixel's class depends on every window that covers it, with weights set by the
window's neighbours. A block is therefore not an arbitrary cut. Blocks follow the rows of
windows of the *whole scene's* plan:

- block ``k`` finishes the output rows of a run of consecutive rows of windows (as many
  as start within the block's share of the pixel budget): rows ``[a, b)``;
- it predicts on the source rows from the first window that covers row ``a`` to the end
  of the last window that covers row ``b - 1``: its own windows plus a halo, the windows
  above that overlap row ``a`` (one row of windows unless the overlap exceeds half the
  window), computed again by this block as the sliding window itself overlaps;
- that sub-raster starts on a window start of the scene's plan, so ``landcover predict``'s
  own plan of it has exactly the scene's windows there (same starts, same pooling grid,
  same batches of a row, same blending weights on the rows kept), and rows ``[a, b)`` of
  its map are bit for bit those of the whole scene's map.

Each block runs :func:`~landcover.inference.predict_raster.predict_raster` itself on a VRT of its
rows (:func:`~landcover.batch.vrt.subset_vrt`), so it inherits everything ``landcover
predict`` does (class values, nodata, styles); :func:`assemble` copies rows ``[a, b)`` of
every block into one GeoTIFF / COG with the first block's colour table, tags and sidecars.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import rasterio
from rasterio.windows import Window

from landcover.geo.raster import RasterProfile
from landcover.geo.writer import RasterWriter
from landcover.inference.sliding import WindowPlan


@dataclass(frozen=True)
class Block:
    """One block of a scene.

    Attributes:
        index: Position from the top.
        rows: Output rows ``[start, stop)`` this block provides.
        read: Source rows ``[start, stop)`` it predicts on (``rows`` and its halo).
    """

    index: int
    rows: tuple[int, int]
    read: tuple[int, int]


def plan_blocks(
    height: int, width: int, window: int, overlap: int, divisor: int, block_pixels: int
) -> list[Block]:
    """Blocks of about ``block_pixels`` output pixels each (one block when it all fits).

    Args:
        height: Scene rows.
        width: Scene columns.
        window: Window size of the prediction (as given to ``predict_raster``).
        overlap: Overlap of the windows.
        divisor: The network's size divisor.
        block_pixels: Output pixels per block (at least one row of windows per block).
    """
    plan = WindowPlan.make(height, width, window, overlap, divisor)
    starts = plan.row_starts
    rows = max(1, block_pixels // plan.width)  # output rows per block, about
    groups = [[0]]  # window rows of each block
    for i in range(1, len(starts)):
        if starts[i] - starts[groups[-1][0]] >= rows:
            groups.append([i])
        else:
            groups[-1].append(i)
    if len(groups) == 1:
        return [Block(0, (0, height), (0, height))]
    blocks = []
    for k, group in enumerate(groups):
        last = k == len(groups) - 1
        a = 0 if k == 0 else starts[group[0]]
        b = height if last else starts[group[-1] + 1]
        needed = [i for i, s in enumerate(starts) if s < b and s + plan.win_h > a]
        read = (starts[needed[0]], min(height, starts[needed[-1]] + plan.win_h))
        blocks.append(Block(k, (a, b), read))
    return blocks


def block_paths(folder: Path, block: Block, probabilities: bool) -> tuple[Path, Path | None]:
    """Where block ``block`` writes its class map (and probabilities)."""
    classes = folder / f"block{block.index:04d}.tif"
    probs = folder / f"block{block.index:04d}_probabilities.tif" if probabilities else None
    return classes, probs


def _copy_atomic(src: Path, dst: Path) -> Path:
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    return dst


def _assemble_one(parts: list[tuple[Block, Path]], out: Path, profile: RasterProfile,
                  cog: bool) -> Path:  # fmt: skip
    first = parts[0][1]
    with rasterio.open(first) as ds:
        try:
            colormap = ds.colormap(1)
        except ValueError:
            colormap = None
        writer = RasterWriter(
            out, profile, count=ds.count, dtype=ds.dtypes[0], nodata=ds.nodata,
            colormap=colormap, descriptions=list(ds.descriptions), cog=cog,
            tags=ds.tags(1) or None,
        )  # fmt: skip
    try:
        for block, path in parts:
            a, b = block.rows
            with rasterio.open(path) as ds:
                data = ds.read(window=Window(0, a - block.read[0], ds.width, b - a))
            writer.write(data, Window(0, a, profile.width, b - a))
        return writer.close()
    except BaseException:
        writer.abort()
        raise


def assemble(
    blocks: list[Block],
    folder: Path,
    profile: RasterProfile,
    classes: Path,
    probabilities: Path | None,
    *,
    cog: bool,
    style: bool,
) -> list[Path]:
    """Put the blocks' maps together into the scene's outputs; returns the paths written.

    The sidecars (QGIS style, GDAL category names) of the first block, written by
    ``predict_raster``, are copied next to the outputs when ``style``.
    """
    written = []
    kinds = [(classes, 0)] + ([(probabilities, 1)] if probabilities is not None else [])
    for out, which in kinds:
        parts = [(b, block_paths(folder, b, probabilities is not None)[which]) for b in blocks]
        written.append(_assemble_one(parts, out, profile, cog))  # type: ignore[arg-type]
        if style:
            first = parts[0][1]
            assert first is not None
            sidecars = [(first.with_suffix(".qml"), out.with_suffix(".qml")),
                        (first.with_name(first.name + ".aux.xml"),
                         out.with_name(out.name + ".aux.xml"))]  # fmt: skip
            for src, dst in sidecars:
                if src.is_file():
                    written.append(_copy_atomic(src, dst))
    return written
