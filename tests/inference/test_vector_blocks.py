"""Strip-wise vectorisation: the whole-raster polygons, in bounded reads, from files too."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pyogrio.raw
import pytest
import rasterio
import shapely
from affine import Affine

from landcover.geo.classes import ClassScheme
from landcover.inference.sieve import sieved_strips
from landcover.inference.vector_blocks import block_polygons
from landcover.inference.vectorize import (
    EXACT,
    VectorOptions,
    open_map,
    polygons,
    sieve_map,
    write_vectors,
)

SCHEME = ClassScheme(names=("water", "forest", "field"), values=(0, 1, 2))


def _map(seed: int = 0, size: tuple[int, int] = (60, 70)) -> np.ndarray:
    """Blocky regions, speckle, a U whose arms meet only at its bottom, a nodata corner."""
    rng = np.random.default_rng(seed)
    h, w = size
    arr = rng.integers(0, 3, size=(h // 6 + 1, w // 7 + 1)).repeat(6, 0).repeat(7, 1)[:h, :w]
    arr = arr.astype(np.uint8)
    speck = rng.random(arr.shape) < 0.05
    arr[speck] = (arr[speck] + rng.integers(1, 3, int(speck.sum()))) % 3
    arr[10:40, 20:23] = 2  # the U: two arms joined at rows 37..39
    arr[10:40, 30:33] = 2
    arr[37:40, 20:33] = 2
    arr[10:37, 23:30] = 0
    arr[:4, :5] = 255
    arr[50:53, 60:] = 255  # a nodata band cutting a region
    return arr


def _class_shapes(geoms: list, attrs: list) -> dict[int, object]:
    out = {}
    for c in range(3):
        mine = [g for g, a in zip(geoms, attrs) if a["class_id"] == c]
        out[c] = shapely.union_all(np.array(mine, dtype=object))
    return out


def _signature(attrs: list) -> Counter:
    """Multiset of (class, pixel count): the regions, whatever their order."""
    return Counter((a["class_id"], round(a["area_m2"])) for a in attrs)


@pytest.mark.parametrize("rows", [1, 2, 7, 13])
def test_strips_give_the_whole_raster_polygons(rows: int) -> None:
    """Exact outlines: per class the union is the same area, the same regions (class and
    pixel count each, so the same polygon count), and the symmetric difference is empty."""
    arr = _map()
    t, crs = Affine(1, 0, 0, 0, -1, 0), rasterio.crs.CRS.from_epsg(3857)  # 1 m² pixels
    whole_g, whole_a = polygons(arr, SCHEME, transform=t, crs=crs, options=EXACT, rows=arr.shape[0])
    geoms, attrs = polygons(arr, SCHEME, transform=t, crs=crs, options=EXACT, rows=rows)
    assert len(geoms) == len(whole_g) and _signature(attrs) == _signature(whole_a)
    whole, strips = _class_shapes(whole_g, whole_a), _class_shapes(geoms, attrs)
    for c in range(3):
        assert strips[c].area == whole[c].area == float((arr == c).sum())
        assert shapely.symmetric_difference(strips[c], whole[c]).area == 0
    assert all(g.geom_type == "Polygon" and g.is_valid for g in geoms)
    # the U is one polygon although strips of 1..13 rows cut its arms apart
    u = [a for a in attrs if a["class_id"] == 2 and a["area_m2"] >= 2 * 30 * 3]
    assert len(u) >= 1


@pytest.mark.parametrize("rows", [3, 16])
def test_simplified_strips_keep_regions_and_tile_the_map(rows: int) -> None:
    """Simplified (1 px): the same regions as the whole map, and still a coverage of
    the valid pixels (no gap, no overlap)."""
    arr = _map(1, (64, 64))
    opts = VectorOptions(min_area_px=0, simplify=1.0)
    t, crs = Affine(1, 0, 0, 0, -1, 0), rasterio.crs.CRS.from_epsg(3857)
    whole_g, whole_a = polygons(arr, SCHEME, transform=t, crs=crs, options=opts, rows=64)
    geoms, attrs = polygons(arr, SCHEME, transform=t, crs=crs, options=opts, rows=rows)
    assert len(geoms) == len(whole_g) and _signature(attrs) == _signature(whole_a)
    cover = np.array(geoms, dtype=object)
    union = shapely.union_all(cover)
    valid = float((arr != 255).sum())
    assert float(shapely.area(cover).sum()) == pytest.approx(union.area, abs=1e-6)
    assert union.area == pytest.approx(valid, abs=1e-6)


def test_reads_are_one_strip_at_a_time_and_each_row_once() -> None:
    """Memory does not grow with the map: every read asks for at most one strip."""
    arr = _map(2, (90, 40))
    asked: list[tuple[int, int]] = []

    def read(row0: int, n: int) -> tuple[np.ndarray, None]:
        asked.append((row0, n))
        return arr[row0 : row0 + n], None

    batches = list(block_polygons(read, *arr.shape, rows=8))
    assert max(n for _, n in asked) == 8
    assert [r for r, _ in asked] == list(range(0, 90, 8)) and sum(n for _, n in asked) == 90
    assert sum(len(b) for b in batches) == len(polygons(arr, SCHEME, options=EXACT)[0])


def _write(path: Path, arr: np.ndarray, nodata: int | None = 255) -> Path:
    profile = {"driver": "GTiff", "width": arr.shape[1], "height": arr.shape[0], "count": 1,
               "dtype": "uint8", "crs": "EPSG:32632", "nodata": nodata,
               "transform": Affine(10, 0, 500_000, 0, -10, 5_000_000)}  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(arr, 1)
    return path


def _speckle(n: int, seed: int = 0) -> np.ndarray:
    """A map like an untrained model's: smooth class fields under pixel noise."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    field = ndimage.zoom(rng.normal(size=(5, n // 16, n // 16)), (1, 16, 16), order=1)
    arr = (field + rng.normal(0, 0.6, (5, n, n))).argmax(0).astype(np.uint8)
    arr[100:140, :50] = 255
    return arr


def _small_regions(arr: np.ndarray, size: int) -> int:
    from scipy import ndimage

    return sum(int((np.bincount(ndimage.label(arr == c)[0].ravel())[1:] < size).sum())
               for c in range(5))  # fmt: skip


@pytest.mark.parametrize(("size", "rows", "agreement"), [(4, 16, 0.995), (16, 64, 0.999),
                                                         (4, 256, 0.999)])  # fmt: skip
def test_strip_sieve_agrees_with_the_whole_map_sieve(
    size: int, rows: int, agreement: float
) -> None:
    """Sieved strip by strip with a halo: nearly the whole-map sieve (99.7 % of the pixels
    with 16-row strips, 99.99 % with 256), and as few small regions left (to 1 %)."""
    arr = _speckle(512)
    whole = sieve_map(arr, size)
    read = sieved_strips(lambda row0, n: arr[row0 : row0 + n], 512, size)
    strips = np.concatenate([read(r, min(rows, 512 - r)) for r in range(0, 512, rows)])
    assert (strips == whole).mean() >= agreement
    assert (strips != arr).any() and ((strips == 255) == (arr == 255)).all()
    # a small region cut by a seam may join different neighbours above and below it
    assert _small_regions(strips, size) <= _small_regions(whole, size) + 0.01 * (arr != 255).sum()
    assert _small_regions(whole, size) == 0  # the iterative sieve leaves none below size


def test_file_map_is_sieved_like_the_array(tmp_path: Path) -> None:
    """open_map's strips (windowed reads of the GeoTIFF) are the array's strip sieve;
    islands with one neighbour go exactly as in the whole-map sieve."""
    arr = _map(3, (50, 80))
    path = _write(tmp_path / "classes.tif", arr)
    with open_map(path, SCHEME, options=VectorOptions(min_area_px=8)) as src:
        assert src.sieve_px == 8
        got = np.concatenate([src.read(r, min(7, 50 - r))[0] for r in range(0, 50, 7)])
    read = sieved_strips(lambda row0, n: arr[row0 : row0 + n], 50, 8)
    np.testing.assert_array_equal(got, np.concatenate([read(r, min(7, 50 - r))
                                                       for r in range(0, 50, 7)]))  # fmt: skip
    islands = np.zeros((60, 30), np.uint8)
    islands[5:7, 5] = islands[20, 3:6] = islands[40:43, 10:13] = 1
    read = sieved_strips(lambda row0, n: islands[row0 : row0 + n], 60, 4)
    got = np.concatenate([read(r, 5) for r in range(0, 60, 5)])
    np.testing.assert_array_equal(got, sieve_map(islands, 4))
    assert (got == 1).sum() == 9


def test_minimum_mapping_unit_removes_small_regions_and_keeps_the_others(tmp_path: Path) -> None:
    """Islands of 3 and 7 px go into the surrounding class at --min-area 8; 8 and 20 stay."""
    arr = np.zeros((40, 40), np.uint8)
    arr[2:5, 2] = 1  # 3 px
    arr[10, 10:17] = 1  # 7 px
    arr[20:22, 20:24] = 1  # 8 px
    arr[30:34, 30:35] = 1  # 20 px
    path = _write(tmp_path / "classes.tif", arr)
    out = write_vectors(path, SCHEME, gpkg=tmp_path / "v.gpkg",
                        options=VectorOptions(min_area_px=8, simplify=0), rows=6)  # fmt: skip
    _, _, _, (cls, area) = pyogrio.raw.read(out["gpkg"], layer="landcover",
                                            columns=["class_id", "area_m2"])[:4]  # fmt: skip
    assert sorted(area[cls == 1].tolist()) == [800.0, 2000.0]  # 8 and 20 px of 100 m²
    assert cls.tolist().count(0) == 1 and area[cls == 0].sum() == (1600 - 28) * 100.0
    # the raster map itself is not sieved
    with rasterio.open(path) as src:
        assert (src.read(1) == 1).sum() == 38


def test_one_pass_writes_both_files_with_the_same_polygons(tmp_path: Path) -> None:
    """GeoJSON and GeoPackage from one pass, strips or not: the same regions; the
    GeoPackage keeps its QGIS style."""
    import json

    arr = _map(4, (70, 50))
    path = _write(tmp_path / "classes.tif", arr)
    counts = []
    for rows in (5, None):
        out = write_vectors(path, SCHEME, geojson=tmp_path / f"{rows}.geojson",
                            gpkg=tmp_path / f"{rows}.gpkg", rows=rows)  # fmt: skip
        fc = json.loads(Path(out["geojson"]).read_text())
        _, _, _, (cls, area) = pyogrio.raw.read(out["gpkg"], layer="landcover",
                                                columns=["class_id", "area_m2"])[:4]  # fmt: skip
        assert len(fc["features"]) == len(cls) == out["polygons"]
        assert sorted(f["properties"]["area_m2"] for f in fc["features"]) == sorted(area)
        counts.append(Counter(zip(cls.tolist(), area.tolist())))
        styles = pyogrio.raw.read(out["gpkg"], layer="layer_styles", columns=["styleName"])
        assert styles[3][0].tolist() == ["landcover classes"]
    assert counts[0] == counts[1]
