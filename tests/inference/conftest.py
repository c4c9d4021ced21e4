from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from landcover.inference.bundle import ModelBundle
from landcover.inference.testing import tiny_bundle


@pytest.fixture
def bundle() -> ModelBundle:
    """An untrained 3-band, 3-class MAML bundle around a tiny small U-Net."""
    return tiny_bundle(3, 3, mean=100.0, std=50.0)


def _write_tif(
    path: Path, array: np.ndarray, *, nodata: float | None = None, crs: bool = True
) -> Path:
    """Write a (C, H, W) or (H, W) array as a GeoTIFF (EPSG:32618, 30 m pixels)."""
    arr = array if array.ndim == 3 else array[None]
    profile = {
        "driver": "GTiff",
        "width": arr.shape[2],
        "height": arr.shape[1],
        "count": arr.shape[0],
        "dtype": str(arr.dtype),
        "nodata": nodata,
    }
    if crs:
        profile.update(
            crs=CRS.from_epsg(32618), transform=Affine(30, 0, 100_000, 0, -30, 2_800_000)
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(arr)
    return path


def _write_support_folder(
    root: Path,
    n: int = 3,
    size: int = 40,
    bands: int = 3,
    seed: int = 0,
    classes: tuple[str, ...] = ("class0", "class1", "class2"),
) -> Path:
    """A users' region folder whose class is given by the brightness of band 1."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    lines = ["classes:"] + [f"  - {{name: {c}, value: {i + 1}}}" for i, c in enumerate(classes)]
    (root / "classes.yaml").write_text("\n".join([*lines, "ignore: 0"]) + "\n")
    for t in range(n):
        cls = rng.integers(0, len(classes), size=(size // 8, size // 8)).repeat(8, 0).repeat(8, 1)
        img = (rng.normal(0, 10, size=(bands, size, size)) + 60 * cls[None] + 50).astype(np.float32)
        _write_tif(root / "images" / f"tile{t}.tif", img)
        _write_tif(root / "masks" / f"tile{t}.tif", (cls + 1).astype(np.uint8))
    return root


@pytest.fixture
def write_tif():
    """``write_tif(path, array, nodata=None, crs=True) -> path``."""
    return _write_tif


@pytest.fixture
def support_folder(tmp_path: Path) -> Path:
    """A 3-tile users' region folder (40 px tiles, 3 bands, 3 classes)."""
    return _write_support_folder(tmp_path / "support")


@pytest.fixture
def write_support_folder():
    """``write_support_folder(root, n=3, size=40, bands=3, seed=0, classes=...) -> root``."""
    return _write_support_folder
