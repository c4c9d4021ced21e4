"""Committed generators of tiny datasets in the exact on-disk formats the readers accept.

Used by the tests (readers, training ``fast_dev_run`` configs, service) since the real
datasets cannot be downloaded here. Each writes under a root folder and returns it:

* :func:`write_sen12ms_fixture`: SEN12MS season/scene/patch folders and file names, s1 (2
  float32 dB bands), s2 (13 uint16 bands), lc (4 uint16 bands, IGBP first), UTM CRS, 10 m.
  Real patches are 256 px; ``size`` defaults to 64 to keep tests fast.
* :func:`write_deepglobe_fixture`: ``{id}_sat.jpg`` + ``{id}_mask.png`` with masks that are
  *not* pure 0/255 (as in the real data), Unknown pixels, and two appearance groups.
* :func:`write_folder_fixture`: users' region folders (GeoTIFF, PNG or JPEG images; value- or
  colour-coded masks; ``classes.yaml``), optionally without georeferencing.

Images depend on the labels (class-specific values plus noise), so tiny models can learn them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import rasterio
from PIL import Image
from rasterio.crs import CRS
from rasterio.transform import Affine
from scipy import ndimage

from landcover.geo.classes import ClassScheme
from landcover.geo.deepglobe import DEEPGLOBE_SCHEME
from landcover.geo.sen12ms import IGBP_TO_DFC2020, SEASONS


def _blobs(rng: np.random.Generator, size: int, values: Sequence[int]) -> np.ndarray:
    """A label map of smooth blobs taking the given values."""
    fields = np.stack([ndimage.gaussian_filter(rng.standard_normal((size, size)), size / 8)
                       for _ in values])  # fmt: skip
    return np.asarray(values)[fields.argmax(0)]


def _tif(
    path: Path, data: np.ndarray, crs: CRS | None, transform: Affine | None, **kw: object
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {"driver": "GTiff", "width": data.shape[-1], "height": data.shape[-2],
               "count": data.shape[0], "dtype": str(data.dtype)}  # fmt: skip
    if crs is not None:
        profile.update(crs=crs, transform=transform)
    with rasterio.open(path, "w", **profile, **kw) as dst:
        dst.write(data)


def write_sen12ms_fixture(
    root: str | Path,
    *,
    seasons: Sequence[str] = ("ROIs1158_spring", "ROIs1970_fall"),
    scenes: Sequence[int] = (1, 2, 3, 8),
    patches: int = 4,
    size: int = 64,
    nodata_fraction: float = 0.05,
    seed: int = 0,
) -> Path:
    """Write a tiny SEN12MS (scene 8 is in the default test hold-out list).

    Returns:
        ``root``.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    for si, season in enumerate(seasons):
        if season not in SEASONS:
            raise KeyError(f"unknown season {season!r}; use one of {SEASONS}")
        for scene in scenes:
            crs = CRS.from_epsg(32601 + (scene * 7 + si) % 60)
            classes = rng.choice(np.arange(1, 18), size=4, replace=False)
            for p in range(patches):
                n = p * 37 + scene  # patch numbers are not contiguous in the real data
                transform = Affine(10, 0, 400000 + p * size * 10, 0, -10, 5200000)
                igbp = _blobs(rng, size, classes).astype(np.uint16)
                if nodata_fraction > 0:
                    igbp[: max(1, int(size * nodata_fraction)), :] = 0
                dfc = np.asarray(IGBP_TO_DFC2020)[igbp]
                lc = np.stack([igbp, igbp * 2 + 10, igbp + 20, igbp + 30]).astype(np.uint16)
                s2 = 300 + 150 * dfc[None] * (1 + np.arange(13)[:, None, None] % 4)
                s2 = (s2 + rng.normal(0, 60, (13, size, size))).clip(1, 10000).astype(np.uint16)
                s1 = np.stack([-20 + dfc, -25 + 0.5 * dfc]).astype(np.float32)
                s1 = s1 + rng.normal(0, 0.5, s1.shape).astype(np.float32)
                for src, data in (("s1", s1), ("s2", s2), ("lc", lc)):
                    path = root / season / f"{src}_{scene}" / f"{season}_{src}_{scene}_p{n}.tif"
                    _tif(path, data, crs, transform)
    return root


def write_deepglobe_fixture(
    root: str | Path, *, images: int = 8, size: int = 128, seed: int = 0, train_subdir: bool = False
) -> Path:
    """Write a tiny DeepGlobe Land Cover folder (two appearance groups of images).

    Returns:
        ``root``.
    """
    root = Path(root)
    folder = root / "train" if train_subdir else root
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    colors = np.asarray(DEEPGLOBE_SCHEME.colors, dtype=np.int64)
    for i in range(images):
        group = i % 2
        idx = _blobs(rng, size, range(len(colors)))
        idx[:3, :3] = -1  # Unknown pixels
        rgb = np.where(idx[..., None] >= 0, colors[idx], 0)
        # masks are not pure 0/255: jitter each channel on its side of the 128 threshold
        noisy = np.where(
            rgb >= 128, rng.integers(200, 256, rgb.shape), rng.integers(0, 60, rgb.shape)
        )
        image_id = 100000 + 17 * i
        Image.fromarray(noisy.astype(np.uint8)).save(folder / f"{image_id}_mask.png")
        base = np.array([[70, 120, 60], [170, 140, 100]][group])
        sat = base + 12 * np.where(idx >= 0, idx, 0)[..., None] + rng.normal(0, 8, (size, size, 3))
        Image.fromarray(sat.clip(0, 255).astype(np.uint8)).save(
            folder / f"{image_id}_sat.jpg", quality=92
        )
    return root


FIXTURE_SCHEME = ClassScheme(
    names=("water", "forest", "crops"),
    values=(10, 20, 30),
    colors=((0, 0, 255), (0, 160, 0), (255, 220, 0)),
    ignore_value=0,
)


def write_folder_fixture(
    root: str | Path,
    *,
    regions: int = 2,
    tiles: int = 4,
    size: int = 32,
    bands: int = 4,
    encoding: Literal["value", "color"] = "value",
    image_format: Literal["tif", "png", "jpg"] = "tif",
    georeferenced: bool = True,
    seed: int = 0,
) -> Path:
    """Write users' region folders ``root/region_{i}`` with ``classes.yaml`` at the root.

    Value-coded masks hold 10/20/30 (water/forest/crops) and 0 (ignore); colour-coded masks
    the classes' RGB colours. PNG and JPEG images have 3 uint8 bands; masks of JPEG images
    are PNG (lossless).

    Returns:
        ``root``.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    scheme = FIXTURE_SCHEME
    if encoding == "color":
        scheme = ClassScheme(names=scheme.names, colors=scheme.colors, encoding="color",
                             ignore_value=(0, 0, 0))  # fmt: skip
    root.mkdir(parents=True, exist_ok=True)
    scheme.save(root / "classes.yaml")
    n_bands = bands if image_format == "tif" else 3
    for r in range(regions):
        offset = rng.normal(0, 20, n_bands)
        for t in range(tiles):
            idx = _blobs(rng, size, range(3))
            ignore = rng.random((size, size)) < 0.02
            img = (
                60
                + 50 * idx[None]
                + offset[:, None, None]
                + rng.normal(0, 8, (n_bands, size, size))
            )
            img = img.clip(0, 255).astype(np.uint8 if image_format != "tif" else np.uint16)
            region = root / f"region_{r}"
            (region / "images").mkdir(parents=True, exist_ok=True)
            (region / "masks").mkdir(parents=True, exist_ok=True)
            stem = f"tile_{t:02d}"
            crs = CRS.from_epsg(32633) if georeferenced else None
            tr = Affine(10, 0, 500000 + r * 10000 + t * size * 10, 0, -10, 4000000)
            if encoding == "value":
                mask = np.where(ignore, 0, np.asarray(scheme.values)[idx]).astype(np.uint8)[None]
            else:
                cols = np.asarray(scheme.colors, dtype=np.uint8)[idx]
                mask = np.where(ignore[..., None], 0, cols).astype(np.uint8).transpose(2, 0, 1)
            if image_format == "tif":
                _tif(region / "images" / f"{stem}.tif", img, crs, tr)
                _tif(region / "masks" / f"{stem}.tif", mask, crs, tr)
            else:
                Image.fromarray(img.transpose(1, 2, 0)).save(
                    region / "images" / f"{stem}.{image_format}"
                )
                m = mask[0] if mask.shape[0] == 1 else mask.transpose(1, 2, 0)
                Image.fromarray(m).save(region / "masks" / f"{stem}.png")
    return root
