from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely.geometry

from landcover.geo.classes import ClassScheme
from landcover.inference.vectorize import EXACT, feature_collection, write_geojson

# maps here hold class indices: the scheme of a map of indices (map_scheme(..., "index"))
SCHEME = ClassScheme(names=("water", "forest", "field"), values=(0, 1, 2))


def _ring_area(ring: list[list[float]]) -> float:
    """Signed shoelace area."""
    a = np.asarray(ring)
    return 0.5 * float(np.sum(a[:-1, 0] * a[1:, 1] - a[1:, 0] * a[:-1, 1]))


def _check_polygon(geom: dict) -> float:
    assert geom["type"] == "Polygon"
    rings = geom["coordinates"]
    areas = []
    for ring in rings:
        assert len(ring) >= 4, "a linear ring has at least 4 positions"
        assert ring[0] == ring[-1], "rings are closed"
        # no repeated consecutive vertex and no zero-area ring
        assert all(a != b for a, b in itertools.pairwise(ring))
        areas.append(_ring_area(ring))
        assert abs(areas[-1]) > 0
    # holes have the orientation opposite to the exterior and lie inside it
    assert all(np.sign(h) == -np.sign(areas[0]) for h in areas[1:])
    return abs(areas[0]) - sum(abs(h) for h in areas[1:])


def _class_map(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 3, size=(6, 7)).astype(np.uint8)
    arr = blocks.repeat(5, 0).repeat(5, 1)  # 30 x 35, blocky regions
    arr[12, 12] = (arr[12, 12] + 1) % 3  # single pixel islands make holes
    arr[3, 20] = (arr[3, 20] + 2) % 3
    arr[:2, :4] = 255  # nodata corner
    return arr


def test_polygons_are_valid_and_cover_each_class_exactly() -> None:
    arr = _class_map()
    fc = feature_collection(arr, SCHEME, options=EXACT)  # no CRS: pixel coordinates
    assert fc["type"] == "FeatureCollection" and fc["coordinate_system"].startswith("pixel")
    area = {i: 0.0 for i in range(3)}
    holes = 0
    for f in fc["features"]:
        assert f["type"] == "Feature"
        props = f["properties"]
        assert props["class_name"] == SCHEME.names[props["class_index"]]
        assert props["color"] == "#{:02x}{:02x}{:02x}".format(*SCHEME.colors[props["class_index"]])
        area[props["class_index"]] += _check_polygon(f["geometry"])
        holes += len(f["geometry"]["coordinates"]) - 1
    for c in range(3):
        assert area[c] == pytest.approx(float((arr == c).sum()))
    assert holes >= 2  # the islands punched holes
    assert not any(f["properties"]["class_index"] == 255 for f in fc["features"])


def test_geojson_file_in_wgs84(tmp_path: Path, shared_data: Path) -> None:
    src = shared_data / "geotiff" / "RGB.byte.tif"
    with rasterio.open(src) as s:
        profile = s.profile
        left, bottom, right, top = rasterio.warp.transform_bounds(s.crs, "EPSG:4326", *s.bounds)
    arr = np.zeros((profile["height"], profile["width"]), np.uint8)
    arr[:, profile["width"] // 2 :] = 1
    arr[:50] = 2
    profile.update(count=1, dtype="uint8", nodata=255)
    path = tmp_path / "classes.tif"
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(arr, 1)
    out = write_geojson(path, tmp_path / "out.geojson", SCHEME)
    fc = json.loads(out.read_text())
    assert fc["coordinate_system"] == "EPSG:4326"
    assert sorted(f["properties"]["class_name"] for f in fc["features"]) == [
        "field",
        "forest",
        "water",
    ]
    for f in fc["features"]:
        _check_polygon(f["geometry"])
        for lon, lat in f["geometry"]["coordinates"][0]:
            assert left - 1e-6 <= lon <= right + 1e-6 and bottom - 1e-6 <= lat <= top + 1e-6


def test_geojson_in_the_rasters_crs_names_it(tmp_path: Path, shared_data: Path) -> None:
    """``to_wgs84=False``: the GeoJSON names the raster's CRS (GeoJSON 2008 ``crs`` member),
    so GDAL reads it in that CRS (before: no member, read as WGS 84)."""
    import pyogrio

    src = shared_data / "geotiff" / "RGB.byte.tif"
    with rasterio.open(src) as s:
        profile, bounds = s.profile, s.bounds
    arr = np.zeros((profile["height"], profile["width"]), np.uint8)
    arr[:, profile["width"] // 2 :] = 1
    profile.update(count=1, dtype="uint8", nodata=255)
    path = tmp_path / "classes.tif"
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(arr, 1)
    out = write_geojson(path, tmp_path / "out.geojson", SCHEME, to_wgs84=False)
    info = pyogrio.read_info(out)
    assert rasterio.crs.CRS.from_user_input(info["crs"]).to_epsg() == 32618
    assert info["total_bounds"] == pytest.approx(tuple(bounds))


def test_default_generalisation_keeps_agreement_and_topology() -> None:
    """Speckle goes, the map stays: >= 5x fewer polygons, >= 0.97 agreement, and the
    polygons still tile the map (no gaps, no overlaps between neighbours)."""
    import rasterio.features
    import shapely

    from landcover.inference.vectorize import VectorOptions, polygons, sieve_map

    rng = np.random.default_rng(4)
    arr = rng.integers(0, 3, size=(8, 8)).repeat(16, 0).repeat(16, 1).astype(np.uint8)
    speck = rng.random(arr.shape) < 0.01  # salt-and-pepper: 1 % of the pixels
    arr[speck] = (arr[speck] + rng.integers(1, 3, int(speck.sum()))) % 3
    transform = rasterio.transform.from_origin(500_000, 1_280, 10, 10)
    exact, _ = polygons(arr, SCHEME, transform=transform, options=EXACT)
    geoms, attrs = polygons(arr, SCHEME, transform=transform, options=VectorOptions())
    assert len(geoms) * 5 <= len(exact)
    shapes = ((g, a["class_id"]) for g, a in zip(geoms, attrs))
    burnt = rasterio.features.rasterize(shapes, out_shape=arr.shape, transform=transform, fill=255)
    assert (burnt == arr).mean() >= 0.97
    assert (burnt == sieve_map(arr, VectorOptions().min_area_px)).mean() >= 0.98
    cover = np.array(geoms, dtype=object)
    assert all(g.is_valid for g in geoms) and shapely.coverage_is_valid(cover)
    union = shapely.coverage_union_all(cover)
    total = arr.size * 100.0  # m² of the 10 m pixels
    assert float(shapely.area(cover).sum()) == pytest.approx(union.area, rel=1e-9)  # no overlap
    assert union.area == pytest.approx(total, rel=1e-9)  # no gap
    # simplifying each polygon on its own (not as a coverage) breaks the shared edges
    alone = shapely.simplify(cover, 10.0)
    assert not shapely.coverage_is_valid(alone) or shapely.coverage_union_all(
        alone
    ).area != pytest.approx(float(shapely.area(alone).sum()), rel=1e-9)


@pytest.mark.parametrize("north_up", [True, False])
def test_geojson_rings_follow_the_right_hand_rule(north_up: bool) -> None:
    """RFC 7946: exterior rings counter-clockwise, holes clockwise, whatever the raster's
    orientation (before: clockwise for south-up rasters and some north-up polygons)."""
    from affine import Affine
    from rasterio.crs import CRS

    classes = np.zeros((12, 12), np.uint8)
    classes[3:9, 3:9] = 1
    classes[5:7, 5:7] = 2  # a hole in class 1
    e = -10 if north_up else 10
    fc = feature_collection(classes, SCHEME, transform=Affine(10, 0, 5e5, 0, e, 5e6),
                            crs=CRS.from_epsg(32632), options=EXACT)  # fmt: skip
    polys = [shapely.geometry.shape(f["geometry"]) for f in fc["features"]]
    assert len(polys) == 3 and any(p.interiors for p in polys)
    assert all(p.exterior.is_ccw for p in polys)
    assert all(not ring.is_ccw for p in polys for ring in p.interiors)
