"""Class maps carry the class file's values, not the indices 0..n-1 (issue 23, item 2).

A user's reference map numbers its 7 classes 1..7; before, the written map held 0..6 and an
analyst joining it to their legend got every class off by one. The GeoTIFF, its colour
table, band tags, QGIS style, GDAL category names and attribute table, the polygons'
``class_id``, the service's PNG and the ONNX metadata all key names and colours by the same
values; ``--class-values index`` writes the indices instead.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyogrio.raw
import pytest
import rasterio

from landcover.cli import main as cli
from landcover.geo.classes import ClassScheme
from landcover.geo.map_values import index_lut, map_scheme, value_lut
from landcover.inference.preview import colorize_rgba
from landcover.inference.testing import tiny_bundle

#: Seven classes whose values are neither 0..6 nor contiguous.
VALUES = (1, 2, 3, 5, 8, 13, 42)
SCHEME = ClassScheme(names=tuple(f"c{v}" for v in VALUES), values=VALUES, ignore_value=0)


@pytest.fixture(scope="module")
def maps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One scene predicted twice: with the class file's values and with indices."""
    tmp = tmp_path_factory.mktemp("values")
    bundle = replace(tiny_bundle(3, 7, mean=100.0, std=40.0, seed=4), classes=SCHEME.to_dict())
    path = bundle.save(tmp / "seven.bundle")
    rng = np.random.default_rng(0)
    img = rng.normal(100, 60, (3, 90, 120)).astype(np.float32)
    img[:, :8, :8] = np.nan
    profile = {"driver": "GTiff", "width": 120, "height": 90, "count": 3, "dtype": "float32",
               "nodata": float("nan"), "crs": "EPSG:32633",
               "transform": rasterio.Affine(10, 0, 4e5, 0, -10, 5e6)}  # fmt: skip
    with rasterio.open(tmp / "in.tif", "w", **profile) as dst:
        dst.write(img)
    out = {"dir": tmp}
    for mode in ("file", "index"):
        out[mode] = tmp / f"{mode}.tif"
        assert cli(["predict", str(path), str(tmp / "in.tif"), str(out[mode]), "--quiet",
                    "--class-values", mode, "--geojson", str(tmp / f"{mode}.geojson"),
                    "--gpkg", str(tmp / f"{mode}.gpkg"), "--min-area", "0"]) == 0  # fmt: skip
    return out


def _read(path: Path) -> tuple[np.ndarray, dict, dict]:
    with rasterio.open(path) as ds:
        return ds.read(1), ds.colormap(1), ds.tags(1)


def test_geotiff_holds_the_class_file_values(maps: dict) -> None:
    values, cmap, tags = _read(maps["file"])
    index, icmap, itags = _read(maps["index"])
    assert (values[:8, :8] == 255).all() and (index[:8, :8] == 255).all()
    assert set(np.unique(values)) <= {*VALUES, 255} and len(np.unique(values)) > 3
    # the same map, numbered two ways: value = VALUES[index]
    np.testing.assert_array_equal(values, value_lut(SCHEME)[index])
    for i, (v, name, rgb) in enumerate(zip(VALUES, SCHEME.names, SCHEME.colors)):
        assert cmap[v][:3] == rgb and icmap[i][:3] == rgb
        assert tags[f"CLASS_{v}"] == name and itags[f"CLASS_{i}"] == name
    assert cmap[255][3] == 0


def test_styles_and_attribute_table_use_the_values(maps: dict) -> None:
    entries = (
        ET.parse(maps["file"].with_suffix(".qml"))
        .getroot()
        .findall("pipe/rasterrenderer/colorPalette/paletteEntry")
    )
    assert [(int(e.get("value")), e.get("label")) for e in entries] == list(
        zip(VALUES, SCHEME.names)
    )
    pam = ET.parse(maps["dir"] / "file.tif.aux.xml").getroot()
    cats = [c.text or "" for c in pam.findall("PAMRasterBand/CategoryNames/Category")]
    assert len(cats) == 43 and all(cats[v] == n for v, n in zip(VALUES, SCHEME.names))
    assert cats[0] == cats[4] == ""
    rows = pam.findall("PAMRasterBand/GDALRasterAttributeTable/Row")
    assert [(int(r[0].text), r[1].text) for r in rows] == list(zip(VALUES, SCHEME.names))


@pytest.mark.parametrize("mode", ["file", "index"])
def test_polygons_carry_the_map_values(maps: dict, mode: str) -> None:
    arr, _, _ = _read(maps[mode])
    fc = json.loads((maps["dir"] / f"{mode}.geojson").read_text())
    _, _, _, fields = pyogrio.raw.read(maps["dir"] / f"{mode}.gpkg", columns=["class_id"])
    ids = {f["properties"]["class_id"] for f in fc["features"]}
    assert ids == set(np.unique(arr)) - {255} == set(fields[0].tolist())
    for f in fc["features"]:
        p = f["properties"]
        i = VALUES.index(p["class_id"]) if mode == "file" else p["class_id"]
        assert p["class_index"] == i and p["class_name"] == SCHEME.names[i]
        assert p["color"] == "#{:02x}{:02x}{:02x}".format(*SCHEME.colors[i])


def test_png_preview_colours_follow_the_values() -> None:
    arr = np.array([[1, 42], [13, 255]], dtype=np.uint8)
    rgba = colorize_rgba(arr, SCHEME)
    assert tuple(rgba[0, 0, :3]) == SCHEME.colors[0]
    assert tuple(rgba[0, 1, :3]) == SCHEME.colors[6]
    assert tuple(rgba[1, 0, :3]) == SCHEME.colors[5]
    assert rgba[1, 1, 3] == 0


def test_map_scheme_choices_and_refusals() -> None:
    assert map_scheme(SCHEME) is SCHEME
    index = map_scheme(SCHEME, "index")
    assert index.raw_values() == list(range(7)) and index.colors == SCHEME.colors
    np.testing.assert_array_equal(index_lut(SCHEME)[list(VALUES)], np.arange(7))
    assert index_lut(SCHEME)[4] == 255  # a value of no class
    big = ClassScheme(names=("a", "b"), values=(1, 300))
    with pytest.raises(ValueError, match="--class-values index"):
        map_scheme(big)
    assert map_scheme(big, "index").raw_values() == [0, 1]
    with pytest.raises(ValueError, match="255 = nodata"):
        map_scheme(ClassScheme(names=("a", "b"), values=(1, 255)))
    with pytest.raises(ValueError, match="one of"):
        map_scheme(SCHEME, "indices")
    colour = ClassScheme(names=("a", "b"), colors=((0, 0, 0), (9, 9, 9)), encoding="color")
    assert map_scheme(colour).raw_values() == [0, 1]  # colour-coded: indices either way


def test_onnx_metadata_maps_channels_to_values(tmp_path: Path) -> None:
    from landcover.inference.onnx_export import deepness_metadata

    bundle = replace(tiny_bundle(3, 7), classes=SCHEME.to_dict())
    meta = deepness_metadata(bundle, pixel_size_m=None, tile_size=64, overlap_percent=25)
    values = json.loads(meta["landcover"])["class_values"]
    assert values == {str(i): v for i, v in enumerate(VALUES)}
