"""Masks as GIS tools export them: float32 with NaN for unlabeled pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from landcover.cli import main as landcover
from landcover.geo.errors import GeoDataError
from landcover.geo.fixtures import write_folder_fixture
from landcover.geo.folder import read_region_folder


def _float_mask(region: Path, values: np.ndarray) -> None:
    path = region / "masks" / "tile_01.tif"
    with rasterio.open(path) as src:
        profile = src.profile | {"dtype": "float32", "nodata": float("nan")}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(values.astype(np.float32)[None])


def test_float_mask_with_nan_reads_nan_as_unlabeled(tmp_path: Path) -> None:
    region = write_folder_fixture(tmp_path / "ds", regions=1, tiles=2, size=16) / "region_0"
    values = np.full((16, 16), 20.0)  # forest (values 10/20/30, 0 ignore)
    values[:3, :5] = np.nan
    _float_mask(region, values)
    mask = read_region_folder(region)[1]["mask"]
    ignore = read_region_folder(region).scheme.ignore_index
    assert (mask[:3, :5] == ignore).all() and int((mask == ignore).sum()) == 15
    assert (mask[3:] == 1).all()


def test_float_mask_with_fractions_names_the_values(tmp_path: Path) -> None:
    """Before: 10.5 was reported as the known value 10 ("10 is in no class")."""
    region = write_folder_fixture(tmp_path / "ds", regions=1, tiles=2, size=16) / "region_0"
    _float_mask(region, np.full((16, 16), 10.5))
    with pytest.raises(GeoDataError, match=r"non-integer values \(10.5\)") as err:
        read_region_folder(region)[1]
    assert "tile_01.tif" in str(err.value)


def test_inspect_gives_sizes_as_width_by_height(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Like GDAL and the size-mismatch error: width × height (before: height × width)."""
    root = write_folder_fixture(tmp_path / "ds", regions=1, tiles=1, size=16)
    for sub in ("images", "masks"):
        path = root / "region_0" / sub / "tile_00.tif"
        with rasterio.open(path) as src:
            data, profile = src.read()[:, :, :10], src.profile | {"width": 10}
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data)
    assert landcover(["data", "inspect", str(root)]) == 0
    assert "10×16" in capsys.readouterr().out


def test_nan_pixels_of_float_images_are_nodata(tmp_path: Path) -> None:
    """Float images with NaN and no nodata tag: the pixels are invalid (ignored in the
    mask, left out of band statistics) like ``landcover predict`` treats them (before:
    valid, so ``data stats`` gave NaN and training saw NaN inputs)."""
    from landcover.geo.inspect import composite
    from landcover.geo.normalize import compute_band_stats

    root = write_folder_fixture(tmp_path / "ds", regions=1, tiles=2, size=16)
    path = root / "region_0" / "images" / "tile_00.tif"
    with rasterio.open(path) as src:
        data, profile = src.read().astype(np.float32), src.profile | {"dtype": "float32"}
    data[:, :2, :4] = np.nan
    with rasterio.open(path, "w", **(profile | {"nodata": None})) as dst:
        dst.write(data)
    region = read_region_folder(root / "region_0")
    sample = region[0]
    assert int((~sample["valid"]).sum()) == 8 and not sample["valid"][:2, :4].any()
    assert (sample["mask"][:2, :4] == region.scheme.ignore_index).all()
    stats = compute_band_stats([region])
    assert np.isfinite(stats.mean).all() and np.isfinite(stats.std).all()
    rgb = composite(sample["image"].numpy(), region.band_names)
    assert np.isfinite(rgb).all() and rgb.max() > 0
