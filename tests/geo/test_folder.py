from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from PIL import Image

from landcover.geo.errors import GeoDataError, MaskValueError
from landcover.geo.fixtures import FIXTURE_SCHEME, write_folder_fixture
from landcover.geo.folder import read_region_folder, read_regions


@pytest.mark.parametrize(
    ("encoding", "fmt", "georef"),
    [
        ("value", "tif", True),
        ("color", "png", False),
        ("value", "jpg", False),
        ("color", "tif", True),
    ],
)
def test_folder_round_trip(tmp_path: Path, encoding: str, fmt: str, georef: bool) -> None:
    root = write_folder_fixture(
        tmp_path,
        regions=2,
        tiles=3,
        size=16,
        encoding=encoding,
        image_format=fmt,
        georeferenced=georef,
    )
    regions = read_regions(root)
    assert [r.name for r in regions] == ["region_0", "region_1"]
    assert all(len(r) == 3 for r in regions)
    assert regions[0].scheme.names == FIXTURE_SCHEME.names
    assert (regions[0].crs is not None) == georef
    sample = regions[0][0]
    assert sample["key"] == "tile_00"
    assert sample["image"].dtype == torch.float32 and sample["image"].shape[-2:] == (16, 16)
    assert sample["mask"].dtype == torch.int64
    # compare with the raw mask on disk
    mask_file = next((root / "region_0" / "masks").glob("tile_00.*"))
    with rasterio.open(mask_file) as src:
        raw = src.read()
    expected = regions[0].scheme.encode(raw)
    assert torch.equal(sample["mask"], torch.from_numpy(expected))
    assert set(sample["mask"].unique().tolist()) <= {0, 1, 2, 255}
    assert (sample["mask"] == 255).any()  # the fixture's ignore pixels


def test_single_region_folder_uses_parent_class_file(tmp_path: Path) -> None:
    root = write_folder_fixture(tmp_path, regions=1, tiles=2, size=8)
    regions = read_regions(root / "region_0")
    assert len(regions) == 1 and len(regions[0]) == 2


@pytest.fixture()
def region(tmp_path: Path) -> Path:
    write_folder_fixture(tmp_path / "ds", regions=1, tiles=3, size=16)
    return tmp_path / "ds" / "region_0"


def test_missing_mask(region: Path) -> None:
    (region / "masks" / "tile_01.tif").unlink()
    with pytest.raises(GeoDataError, match="has no mask") as err:
        read_region_folder(region)
    assert "tile_01.tif" in str(err.value)


def test_mask_without_image(region: Path) -> None:
    (region / "images" / "tile_02.tif").unlink()
    with pytest.raises(GeoDataError, match="has no image") as err:
        read_region_folder(region)
    assert "masks/tile_02.tif" in str(err.value)


def test_size_mismatch(region: Path) -> None:
    Image.fromarray(np.full((10, 12), 10, np.uint8)).save(region / "masks" / "tile_01.png")
    (region / "masks" / "tile_01.tif").unlink()
    with pytest.raises(GeoDataError, match="masks must match") as err:
        read_region_folder(region)
    assert "tile_01.png" in str(err.value) and "12×10" in str(err.value)


def test_unknown_value(region: Path) -> None:
    arr = np.full((16, 16), 10, np.uint8)
    arr[:2, :3] = 77
    (region / "masks" / "tile_02.tif").unlink()
    Image.fromarray(arr).save(region / "masks" / "tile_02.png")
    with pytest.raises(MaskValueError) as err:
        read_region_folder(region)
    assert "tile_02.png" in str(err.value) and "77 (6 px)" in str(err.value)


def test_unknown_colour(tmp_path: Path) -> None:
    root = write_folder_fixture(
        tmp_path, regions=1, tiles=2, size=8, encoding="color", image_format="png"
    )
    mask = root / "region_0" / "masks" / "tile_01.png"
    arr = np.array(Image.open(mask))
    arr[0, 0] = (12, 34, 56)
    Image.fromarray(arr).save(mask)
    with pytest.raises(MaskValueError) as err:
        read_regions(root)
    assert "tile_01.png" in str(err.value) and "(12, 34, 56) (1 px)" in str(err.value)


def test_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(GeoDataError, match="no region folders"):
        read_regions(tmp_path)
    (tmp_path / "r" / "images").mkdir(parents=True)
    (tmp_path / "r" / "masks").mkdir()
    shutil.copy(write_folder_fixture(tmp_path / "x", regions=1, tiles=1) / "classes.yaml", tmp_path)
    with pytest.raises(GeoDataError, match="no images") as err:
        read_regions(tmp_path)
    assert str(tmp_path / "r" / "images") in str(err.value)


def test_corrupt_file(region: Path) -> None:
    (region / "images" / "tile_00.tif").write_bytes(b"II*\x00" + b"\x00" * 40)
    with pytest.raises(GeoDataError, match="not a readable raster") as err:
        read_region_folder(region)
    assert "tile_00.tif" in str(err.value)


def test_missing_class_file_and_subfolders(region: Path) -> None:
    (region.parent / "classes.yaml").unlink()
    with pytest.raises(GeoDataError, match="no class file"):
        read_region_folder(region)
    shutil.rmtree(region / "masks")
    with pytest.raises(GeoDataError, match="missing the masks/"):
        read_region_folder(region)
