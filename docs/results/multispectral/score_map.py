"""Score whole-scene class maps against the reference; draw scene | reference | maps.

Used by ``run.sh`` beside it (issue 23, item 5)::

    python docs/results/multispectral/score_map.py --scene CASE/scene.tif \
        --reference CASE/reference.tif --map adapted=map.tif --map unadapted=map0.tif \
        --held-out south_east --support SUPPORT_DIR --out DIR

Maps hold the class file's values (``landcover predict``'s default) and 255 where there is
no data; the reference holds values 1..7 and -99999. Every score is over the reference's
valid pixels: the whole scene, the held-out quadrant, and the held-out quadrant without the
support tiles the model was adapted on. Writes ``scores.json`` and ``scene_reference_map.png``
(nodata drawn white in every panel).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import rasterio

from landcover.evaluation.report import atomic_write_text
from landcover.geo.scene import QUADRANTS, SCENE_SCHEME


def scores(pred: np.ndarray, ref: np.ndarray, where: np.ndarray) -> dict[str, float]:
    """Pixel accuracy and mIoU (classes present in the reference or the map) over ``where``."""
    p, r = pred[where], ref[where]
    ious = []
    for v in SCENE_SCHEME.values or ():
        inter = np.sum((p == v) & (r == v))
        union = np.sum((p == v) | (r == v))
        if union:
            ious.append(inter / union)
    return {"accuracy": float(np.mean(p == r)), "miou": float(np.mean(ious)), "pixels": int(p.size)}


def support_mask(support: Path, reference: Path) -> np.ndarray:
    """Pixels of the scene covered by the support tiles (by their georeferencing)."""
    with rasterio.open(reference) as ref:
        out = np.zeros(ref.shape, dtype=bool)
        for tile in sorted((support / "masks").glob("*.tif")):
            with rasterio.open(tile) as t:
                row, col = ref.index(t.bounds.left + 1e-3, t.bounds.top - 1e-3)
                out[row : row + t.height, col : col + t.width] = True
    return out


def rgb(image: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """True colour (red, green, blue = bands 3, 2, 1), 2-98 % stretch, nodata white."""
    bands = image[[2, 1, 0]].astype(float)
    out = np.ones((*valid.shape, 3))
    for i, b in enumerate(bands):
        lo, hi = np.percentile(b[valid], [2, 98])
        out[..., i] = np.where(valid, np.clip((b - lo) / (hi - lo + 1e-9), 0, 1), 1.0)
    return out


def colour(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Class values as their colours, nodata white."""
    out = np.ones((*values.shape, 3))
    for v, c in zip(SCENE_SCHEME.values or (), SCENE_SCHEME.colors):
        out[(values == v) & valid] = np.asarray(c) / 255
    return out


def main() -> None:
    """Score the maps and draw the figure."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scene", type=Path, required=True)
    parser.add_argument("--reference", type=Path, required=True)
    parser.add_argument("--map", action="append", required=True, help="LABEL=PATH")
    parser.add_argument("--held-out", choices=QUADRANTS, required=True)
    parser.add_argument("--support", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch, Rectangle

    with rasterio.open(args.reference) as src:
        ref = src.read(1)
        valid = ref != src.nodata
    with rasterio.open(args.scene) as src:
        image = src.read()
    n = ref.shape[0]
    q = QUADRANTS.index(args.held_out)
    r0, c0, half = (q // 2) * (n // 2), (q % 2) * (n // 2), n // 2
    quadrant = np.zeros_like(valid)
    quadrant[r0 : r0 + half, c0 : c0 + half] = True
    supp = support_mask(args.support, args.reference)
    held = f"held-out {args.held_out}"
    regions = {"whole scene": valid, held: valid & quadrant,
               f"{held} without support tiles": valid & quadrant & ~supp}  # fmt: skip
    maps, result = {}, {}
    for item in args.map:
        label, path = item.split("=", 1)
        with rasterio.open(path) as src:
            maps[label] = src.read(1)
            nodata = src.nodata
        mapped = maps[label] != nodata
        result[label] = {name: scores(maps[label], ref, where) for name, where in regions.items()}
        result[label]["nodata agrees"] = bool(np.array_equal(mapped, valid))
    atomic_write_text(args.out / "scores.json", json.dumps(result, indent=2))
    panels = [("scene (true colour)", rgb(image, valid)), ("reference", colour(ref, valid))]
    panels += [
        (f"{label} map (landcover predict)", colour(m, m != 255)) for label, m in maps.items()
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.6))
    for ax, (title, pic) in zip(axes, panels):
        ax.imshow(pic, interpolation="nearest")
        ax.add_patch(Rectangle((c0 - 0.5, r0 - 0.5), half, half, fill=False, ec="k", lw=1.2,
                               ls="--"))  # fmt: skip
        ax.set_title(title, fontsize=10)
        ax.set_axis_off()
    handles = [Patch(color=np.asarray(c) / 255, label=f"{v} {name}") for v, name, c in
               zip(SCENE_SCHEME.values or (), SCENE_SCHEME.names, SCENE_SCHEME.colors)]  # fmt: skip
    handles.append(Patch(facecolor="white", edgecolor="k", label="nodata (-99999 / 255)"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.suptitle(f"held-out quadrant ({args.held_out}) dashed", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    fig.savefig(args.out / "scene_reference_map.png", dpi=110)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
