"""QGIS-ready outputs: .qml styles, GDAL category names, NaN as nodata, vector attributes."""

from __future__ import annotations

import ctypes
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio
import rasterio.features

from landcover.cli import main as cli
from landcover.geo.classes import ClassScheme
from landcover.inference.predict import NODATA_CLASS, Predictor
from landcover.inference.predict_raster import predict_raster
from landcover.inference.testing import tiny_bundle
from landcover.inference.vectorize import EXACT, VectorOptions, polygons


def gdal_category_names(path: Path) -> list[str]:
    """Band 1's category names as GDAL itself reports them (GDALGetRasterCategoryNames).

    Called through the GDAL library that rasterio ships (rasterio has no binding for
    category names), so this is what gdalinfo and QGIS read.
    """
    libs = Path(rasterio.__file__).parent.parent / "rasterio.libs"
    lib = ctypes.CDLL(str(next(libs.glob("libgdal*.so*"))))
    lib.GDALAllRegister()
    lib.GDALOpen.restype = ctypes.c_void_p
    lib.GDALOpen.argtypes = [ctypes.c_char_p, ctypes.c_int]
    lib.GDALGetRasterBand.restype = ctypes.c_void_p
    lib.GDALGetRasterBand.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.GDALGetRasterCategoryNames.restype = ctypes.POINTER(ctypes.c_char_p)
    lib.GDALGetRasterCategoryNames.argtypes = [ctypes.c_void_p]
    lib.GDALGetMetadata.restype = ctypes.c_void_p
    lib.GDALGetMetadata.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.GDALClose.argtypes = [ctypes.c_void_p]
    ds = lib.GDALOpen(str(path).encode(), 0)
    assert ds, f"GDAL cannot open {path}"
    try:
        band = lib.GDALGetRasterBand(ds, 1)
        # GTiff loads the .aux.xml lazily; reading the band's metadata first (as gdalinfo
        # and QGIS do) triggers it
        lib.GDALGetMetadata(band, None)
        names = lib.GDALGetRasterCategoryNames(band)
        out = []
        i = 0
        while names and names[i] is not None:
            out.append(names[i].decode())
            i += 1
        return out
    finally:
        lib.GDALClose(ds)


@pytest.fixture(scope="module")
def styled(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A 4-band raster with NaN pixels (no nodata tag) predicted with every output."""
    out = tmp_path_factory.mktemp("styled")
    rng = np.random.default_rng(0)
    image = (rng.normal(100, 30, size=(3, 96, 80))).astype(np.float32)
    image[1, 10:14, 20:30] = np.nan  # one band NaN is enough
    image[:, 50, 5] = np.inf
    transform = rasterio.transform.from_origin(4e5, 5e6, 10, 10)
    profile = {"driver": "GTiff", "width": 80, "height": 96, "count": 3, "dtype": "float32",
               "crs": "EPSG:32633", "transform": transform}  # fmt: skip
    src = out / "in.tif"
    with rasterio.open(src, "w", **profile) as dst:
        dst.write(image)
    bundle = tiny_bundle(3, 4, mean=100.0, std=30.0)
    res = predict_raster(
        Predictor.from_bundle(bundle), src, out / "map.tif", probabilities=out / "probs.tif",
        geojson=out / "map.geojson", gpkg=out / "map.gpkg", style=True, window=64, progress=False,
    )  # fmt: skip
    return {"res": res, "bundle": bundle, "out": out}


def test_class_map_qml_is_a_paletted_style_with_names_and_colours(styled: dict) -> None:
    scheme = styled["bundle"].scheme()
    root = ET.parse(styled["out"] / "map.qml").getroot()
    assert root.tag == "qgis"
    renderer = root.find("pipe/rasterrenderer")
    assert renderer.get("type") == "paletted" and renderer.get("band") == "1"
    entries = renderer.findall("colorPalette/paletteEntry")
    assert [e.get("label") for e in entries] == list(scheme.names)
    # the class file's values (1..4 here), not the indices 0..3
    assert [int(e.get("value")) for e in entries] == list(scheme.raw_values()) == [1, 2, 3, 4]
    assert [e.get("color") for e in entries] == [
        "#{:02x}{:02x}{:02x}".format(*c) for c in scheme.colors
    ]
    probs = ET.parse(styled["out"] / "probs.qml").getroot().find("pipe/rasterrenderer")
    assert probs.get("type") == "singlebandpseudocolor"
    items = probs.findall("rastershader/colorrampshader/item")
    assert float(items[0].get("value")) == 0.0 and float(items[-1].get("value")) == 1.0


def test_category_names_read_back_through_gdal(styled: dict) -> None:
    scheme = styled["bundle"].scheme()
    names = list(scheme.names)
    # GDAL's category names are indexed by pixel value: value 0 is no class here
    assert gdal_category_names(styled["out"] / "map.tif") == ["", *names]
    with rasterio.open(styled["out"] / "map.tif") as ds:  # also inside the GeoTIFF
        tags = ds.tags(1)
        values = set(np.unique(ds.read(1)).tolist())
    assert [tags[f"CLASS_{v}"] for v in scheme.raw_values()] == names
    assert values <= {1, 2, 3, 4, NODATA_CLASS} and len(values) > 2


def test_non_finite_pixels_without_nodata_tag_are_nodata(styled: dict) -> None:
    with rasterio.open(styled["res"].classes_path) as ds:
        classes = ds.read(1)
    assert (classes[10:14, 20:30] == NODATA_CLASS).all()
    assert classes[50, 5] == NODATA_CLASS
    assert (classes == NODATA_CLASS).sum() == 4 * 10 + 1  # nothing else is nodata
    with rasterio.open(styled["res"].probabilities_path) as ds:
        probs = ds.read()
    assert np.isnan(probs[:, 10:14, 20:30]).all()
    assert np.allclose(probs[:, 20:, 40:].sum(0), 1.0, atol=1e-5)


def test_vector_files_carry_class_area_and_mean_probability(styled: dict) -> None:
    out = styled["out"]
    fc = json.loads((out / "map.geojson").read_text())
    table = pyogrio.read_info(out / "map.gpkg")
    assert list(table["fields"]) == ["class_id", "class_name", "color", "area_m2", "mean_prob"]
    assert table["features"] == len(fc["features"]) > 0
    assert table["crs"] == "EPSG:32633"
    scheme = styled["bundle"].scheme()
    total = 0.0
    for f in fc["features"]:
        p = f["properties"]
        assert p["class_name"] == scheme.names[scheme.raw_values().index(p["class_id"])]
        assert p["class_index"] == p["class_id"] - 1  # values 1..4, indices 0..3
        assert 0.0 < p["mean_prob"] <= 1.0
        total += p["area_m2"]
    assert total == pytest.approx((96 * 80 - 41) * 100.0)  # valid pixels x 10 m x 10 m


def test_sieve_removes_regions_below_the_minimum_mapping_unit() -> None:
    scheme = ClassScheme(names=("a", "b"), values=(1, 2))
    arr = np.ones((40, 40), np.uint8)  # a map of the class file's values 1 and 2
    arr[5:8, 5:8] = 2  # 9 px island
    arr[20:30, 20:30] = 2  # 100 px field
    _, attrs = polygons(arr, scheme, options=VectorOptions(min_area_px=16, simplify=0))
    assert sorted(a["class_id"] for a in attrs) == [1, 2]  # the island is gone
    assert {a["class_id"]: a["class_name"] for a in attrs} == {1: "a", 2: "b"}
    exact, _ = polygons(arr, scheme, options=EXACT)
    assert len(exact) == 3
    probs = np.stack([np.full(arr.shape, 0.25), np.full(arr.shape, 0.75)]).astype(np.float32)
    _, attrs = polygons(arr, scheme, options=VectorOptions(min_area_px=4, simplify=0),
                        probabilities=probs)  # fmt: skip
    assert {a["class_id"]: a["mean_prob"] for a in attrs if a["class_id"] == 2} == {2: 0.75}


def test_simplified_polygons_still_cover_the_map(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    arr = rng.integers(1, 4, size=(16, 16)).repeat(6, 0).repeat(6, 1).astype(np.uint8)
    scheme = ClassScheme(names=("a", "b", "c"), values=(1, 2, 3))
    transform = rasterio.transform.from_origin(0, 960, 10, 10)
    geoms, attrs = polygons(arr, scheme, transform=transform, crs=rasterio.crs.CRS.from_epsg(3857),
                            options=VectorOptions(min_area_px=0, simplify=1.0))  # fmt: skip
    shapes = ((g, a["class_id"]) for g, a in zip(geoms, attrs))
    burnt = rasterio.features.rasterize(shapes, out_shape=arr.shape, transform=transform, fill=255)
    assert (burnt == arr).mean() > 0.95
    assert all(g.is_valid for g in geoms)


def test_cli_writes_styles_and_gpkg(tmp_path: Path, write_tif) -> None:
    bundle = tiny_bundle(3, 3).save(tmp_path / "m.bundle")
    src = write_tif(tmp_path / "in.tif", np.random.default_rng(0).normal(0, 1, (3, 40, 40)))
    code = cli(["predict", str(bundle), str(src), str(tmp_path / "out.tif"), "--quiet",
                "--gpkg", str(tmp_path / "out.gpkg"), "--min-area", "4"])  # fmt: skip
    assert code == 0
    assert (tmp_path / "out.qml").is_file() and (tmp_path / "out.tif.aux.xml").is_file()
    assert pyogrio.read_info(tmp_path / "out.gpkg")["features"] > 0
    code = cli(["predict", str(bundle), str(src), str(tmp_path / "bare.tif"), "--quiet",
                "--no-style"])  # fmt: skip
    assert code == 0 and not (tmp_path / "bare.qml").exists()
