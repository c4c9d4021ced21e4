"""``data inspect`` catches what a user's own scene hit (issue 23, item 3).

A mask in another CRS variant or shifted on the grid is reported with numbers; the preview
stretches over valid pixels only (before: a -99999 frame made the stretch white).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine

from landcover.cli import main as cli
from landcover.geo.grid_check import compare_grids
from landcover.geo.inspect import composite
from landcover.geo.raster import read_profile, read_raster

CLASSES = "classes:\n  - {name: a, value: 1}\n  - {name: b, value: 2}\n"


def _tif(path: Path, arr: np.ndarray, crs: str, transform: Affine, nodata=None) -> Path:
    arr = arr if arr.ndim == 3 else arr[None]
    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[2], height=arr.shape[1],
                       count=arr.shape[0], dtype=str(arr.dtype), crs=crs, transform=transform,
                       nodata=nodata) as dst:  # fmt: skip
        dst.write(arr)
    return path


def _region(root: Path, mask_crs: str, mask_transform: Affine) -> Path:
    region = root / "r1"
    (region / "images").mkdir(parents=True)
    (region / "masks").mkdir()
    (root / "classes.yaml").write_text(CLASSES)
    rng = np.random.default_rng(0)
    img = rng.uniform(0.1, 0.4, (3, 32, 32)).astype(np.float32)
    _tif(region / "images" / "t.tif", img, "EPSG:26911", Affine(28.5, 0, 5e5, 0, -28.5, 4e6))
    mask = rng.integers(1, 3, (32, 32)).astype(np.uint8)
    _tif(region / "masks" / "t.tif", mask, mask_crs, mask_transform)
    return root


def test_inspect_reports_crs_and_grid_mismatch_with_numbers(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    root = _region(tmp_path / "d", "EPSG:32611", Affine(30, 0, 5e5 + 57, 0, -30, 4e6))
    assert cli(["data", "inspect", str(root)]) == 0
    err = capsys.readouterr().err
    assert "CRS differs: image EPSG:26911 (NAD83 / UTM zone 11N), mask EPSG:32611" in err
    assert "pixel size differs: image 28.5 x 28.5, mask 30 x 30" in err
    assert "mask origin is +2.00 columns, +0.00 rows" in err
    assert "reproject them onto the image grid" in err


def test_inspect_is_quiet_when_the_grids_agree(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    root = _region(tmp_path / "d", "EPSG:26911", Affine(28.5, 0, 5e5, 0, -28.5, 4e6))
    assert cli(["data", "inspect", str(root)]) == 0
    assert "warning" not in capsys.readouterr().err
    image = read_profile(root / "r1" / "images" / "t.tif")
    assert compare_grids(image, image) == []


def test_preview_stretches_over_valid_pixels(tmp_path: Path) -> None:
    """A reflectance scene with a -99999 frame: the footprint spans the colour range."""
    rng = np.random.default_rng(1)
    img = rng.uniform(0.05, 0.45, (3, 60, 60)).astype(np.float32)
    img[:, :, :20] = -99999.0
    path = _tif(tmp_path / "s.tif", img, "EPSG:26911", Affine(28.5, 0, 5e5, 0, -28.5, 4e6),
                nodata=-99999.0)  # fmt: skip
    rgb = composite(read_raster(path).image.numpy(), ["b1", "b2", "b3"])
    inside = rgb[:, 20:]
    assert inside.min() == 0.0 and inside.max() == 1.0
    assert 0.3 < inside.mean() < 0.7  # before: every footprint pixel white (1.0)
