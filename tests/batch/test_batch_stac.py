"""STAC input (written with pystac, no band list in the manifest), STAC output, mosaic,
report, and reruns that check outputs rather than trusting their presence."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from distributed import Client, LocalCluster

from landcover.batch.engine import run_batch
from landcover.batch.manifest import load_manifest
from landcover.inference.testing import tiny_bundle
from tests.batch.batchhelpers import OVERLAP, WINDOW, predict_reference, same_raster
from tests.inference.conftest import _write_tif

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def client():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=":0") as cluster, Client(cluster) as c:  # fmt: skip
        yield c


def _item(item_id: str, assets: dict[str, tuple[str, list[dict]]]) -> pystac.Item:
    item = pystac.Item(item_id, None, None, dt.datetime(2024, 5, 1, tzinfo=dt.UTC), {},
                       collection="test-scenes")  # fmt: skip
    for key, (href, bands) in assets.items():
        item.add_asset(key, pystac.Asset(href, media_type=pystac.MediaType.GEOTIFF,
                                         roles=["data"], extra_fields=bands))  # fmt: skip
    return item


def _project(root: Path) -> tuple[Path, np.ndarray]:
    """Adapted bundle, three STAC items of one image in three asset layouts, manifest."""
    root.mkdir(parents=True, exist_ok=True)
    from landcover.inference.adapt import adapt_folder
    from tests.inference.conftest import _write_support_folder

    meta = tiny_bundle(3, 3, mean=100.0, std=50.0)
    adapt_folder(meta, _write_support_folder(root / "support"), 2).bundle.save(root / "a.bundle")
    img = np.random.default_rng(5).normal(100, 50, (3, 150, 170)).astype(np.float32)
    data = root / "data"
    data.mkdir()
    _write_tif(data / "rgb.tif", img)  # bands exactly the bundle's (STAC 1.1 "bands")
    extra = np.random.default_rng(6).normal(0, 1, (1, 150, 170)).astype(np.float32)
    _write_tif(data / "four.tif", np.concatenate([img[2:3], extra, img[0:2]]))  # b3, nir, b1, b2
    for i in range(3):
        _write_tif(data / f"band{i + 1}.tif", img[i])  # one file per band
    items = [
        _item("exact", {"image": ("data/rgb.tif", {"bands": [{"name": f"b{i}"} for i in
                                                             (1, 2, 3)]}),
                        "thumb": ("data/thumb.png", {})}),
        _item("superset", {"analytic": ("data/four.tif", {"eo:bands": [
            {"name": "b3"}, {"name": "nir", "common_name": "nir"}, {"name": "b1"},
            {"name": "B2"}]})}),
        _item("per-band", {f"B{i}": (f"data/band{i}.tif", {"eo:bands": [{"name": f"b{i}"}]})
                           for i in (1, 2, 3)}),
    ]  # fmt: skip
    pystac.ItemCollection(items).save_object(str(root / "items.json"))
    (root / "m.yaml").write_text(
        f"output: out\npredict: {{window: {WINDOW}, overlap: {OVERLAP}, gpkg: true}}\n"
        "regions:\n  - name: stac\n    adapted: a.bundle\n    stac: items.json\n"
    )
    return root / "m.yaml", img


def test_stac_items_map_without_band_lists(tmp_path, client) -> None:
    manifest_path, _ = _project(tmp_path)
    report = run_batch(load_manifest(manifest_path), client, progress=False)
    assert report["ok"], report["failures"]
    assert [s["status"] for s in report["scenes"]] == ["mapped"] * 3

    gpkg = ("--gpkg", str(tmp_path / "ref.gpkg"))
    ref = predict_reference(tmp_path / "a.bundle", tmp_path / "data" / "rgb.tif",
                            tmp_path / "ref" / "rgb.tif", *gpkg)  # fmt: skip
    maps = tmp_path / "out" / "stac" / "maps"
    for item in ("exact", "superset", "per-band"):
        same_raster(maps / f"{item}.tif", ref)  # same pixels whatever the asset layout
        assert (maps / f"{item}.gpkg").is_file()

    # outputs as a STAC ItemCollection with provenance, read back with pystac
    out = pystac.ItemCollection.from_file(str(tmp_path / "out" / "stac" / "items.json"))
    by_id = {i.id: i for i in out}
    assert set(by_id) == {"exact", "superset", "per-band"}
    item = by_id["superset"]
    assert item.datetime == dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
    assert item.properties["landcover:source"]["assets"] == ["analytic"]
    assert item.properties["landcover:source"]["bands"] == [3, 4, 1]
    assert item.properties["landcover:adapted_bundle"] == str((tmp_path / "a.bundle").resolve())
    assert len(item.properties["landcover:adapted_sha256"]) == 64
    assert item.assets["classes"].href == "maps/superset.tif"
    assert {"classes", "gpkg", "style"} <= set(item.assets)
    with rasterio.open(ref) as ds:
        west, south, east, north = rasterio.warp.transform_bounds(ds.crs, "EPSG:4326", *ds.bounds)
    assert item.bbox == pytest.approx([west, south, east, north])

    # class areas in km²: pixels x 30 m x 30 m
    with rasterio.open(ref) as ds:
        counts = np.bincount(ds.read(1).ravel(), minlength=256)
    row = next(s for s in report["scenes"] if s["scene"] == "exact")
    # the map holds the class file's values 1..3 (class0..class2)
    assert row["class_km2"] == {f"class{v - 1}": pytest.approx(counts[v] * 900 / 1e6)
                                for v in (1, 2, 3) if counts[v]}  # fmt: skip

    # the region's mosaic VRT reads as the maps (all three cover the same ground)
    with rasterio.open(tmp_path / "out" / "stac" / "mosaic.vrt") as m, rasterio.open(ref) as r:
        np.testing.assert_array_equal(m.read(1), r.read(1))
        assert m.crs == r.crs and m.transform == r.transform


def test_rerun_checks_outputs_not_presence(tmp_path, client) -> None:
    manifest_path, _ = _project(tmp_path)
    manifest = load_manifest(manifest_path)
    run_batch(manifest, client, progress=False)
    maps = tmp_path / "out" / "stac" / "maps"
    (maps / "exact.tif").write_bytes((maps / "exact.tif").read_bytes()[:-100])  # truncated
    (maps / "per-band.gpkg").unlink()  # an output removed
    again = run_batch(manifest, client, progress=False)
    status = {s["scene"]: s["status"] for s in again["scenes"]}
    assert status == {"exact": "mapped", "superset": "skipped", "per-band": "mapped"}
    assert (maps / "per-band.gpkg").is_file()

    # other options are another output: everything is mapped again
    manifest_path.write_text(manifest_path.read_text().replace("gpkg: true", "gpkg: false"))
    third = run_batch(load_manifest(manifest_path), client, progress=False)
    assert [s["status"] for s in third["scenes"]] == ["mapped"] * 3
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["totals"]["mapped"] == 3 and report["ok"]


def test_failed_adaptation_fails_its_region_only(tmp_path, client) -> None:
    from tests.inference.conftest import _write_support_folder

    manifest_path, _ = _project(tmp_path)
    tiny_bundle(3, 3, mean=100.0, std=50.0).save(tmp_path / "meta.bundle")
    # classes the model does not know: `landcover adapt` refuses this folder
    _write_support_folder(tmp_path / "wrong", classes=("water", "forest", "urban"))
    manifest_path.write_text(
        manifest_path.read_text()
        + "  - name: broken\n    bundle: meta.bundle\n    support: wrong\n"
        "    scenes: [data/rgb.tif]\n"
    )
    report = run_batch(load_manifest(manifest_path), client, progress=False)
    assert not report["ok"]
    status = {(s["region"], s["scene"]): s["status"] for s in report["scenes"]}
    assert status == {("stac", "exact"): "mapped", ("stac", "superset"): "mapped",
                      ("stac", "per-band"): "mapped", ("broken", "rgb"): "failed"}  # fmt: skip
    (failure,) = report["failures"]
    assert "region broken: adaptation" in failure["error"]
    assert "not classes of the model" in failure["error"]
    assert not (tmp_path / "out" / "broken" / "adapted.bundle").exists()
