from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from landcover.bench import predict as bench


def test_throughput_reports_consistent_numbers(tmp_path: Path) -> None:
    raster = bench._write_raster(tmp_path / "r.tif", 96, 128)
    bundle = bench._bundle(tmp_path / "m.bundle", raster)
    out = bench._throughput(bundle, raster, tmp_path / "o.tif", 64, "cpu")
    assert out["raster"] == "128x96" and out["windows"] == 2 * 3
    assert out["overlap_factor"] == pytest.approx((64 / 48) ** 2)
    # raw forward: 2 x 2 full 64 px tiles (the last row shifted back); path: 128 x 96 pixels
    assert out["raw_forward_px_per_s"] == pytest.approx(4 * 64 * 64 / out["raw_seconds"])
    assert out["geotiff_path_px_per_s"] == pytest.approx(128 * 96 / out["path_seconds"])
    assert out["overhead_ratio"] == pytest.approx(
        out["raw_forward_px_per_s"] / out["geotiff_path_px_per_s"]
    )
    assert (tmp_path / "o.tif").exists()


def test_child_measures_prediction_memory(tmp_path: Path) -> None:
    raster = bench._write_raster(tmp_path / "r.tif", 64, 64)
    bundle = bench._bundle(tmp_path / "m.bundle", raster)
    spec = {"bundle": str(bundle), "window": 64, "threads": 1, "device": "cpu",
            "raster": str(raster), "out": str(tmp_path / "o.tif")}  # fmt: skip
    r = bench._child(spec)
    assert r["peak_rss_mb"] >= r["rss_before_mb"] > 0
    assert r["growth_mb"] == pytest.approx(r["peak_rss_mb"] - r["rss_before_mb"])
    assert (tmp_path / "o.tif").exists()


def test_vector_scaling_rows_are_measured_in_fresh_processes(tmp_path: Path) -> None:
    """Two small speckled maps, GeoPackage and GeoJSON each: time, memory, polygons and
    file size are measured (in a child process), per Mpx, and the temporary files go."""
    from landcover.bench.predict import vector_cost

    rows = vector_cost.scaling(tmp_path, (64, 128))
    assert [(r["map"], r["format"]) for r in rows] == [
        ("64x64", "gpkg"), ("64x64", "geojson"), ("128x128", "gpkg"), ("128x128", "geojson")
    ]  # fmt: skip
    for r in rows:
        assert r["seconds"] > 0 and r["s_per_mpx"] == pytest.approx(r["seconds"] / r["mpx"])
        assert r["polygons"] > 0 and r["file_mb"] > 0 and r["growth_mb"] >= 0
    assert rows[0]["polygons"] == rows[1]["polygons"]  # one vectoriser for both formats
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_bench_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(["--quick", "--window", "64", "--width", "128", "--scene", "320",
                              "--crop", "256", "--fast-window", "128",
                              "--real", str(tmp_path / "absent"),
                              "--json", str(tmp_path / "b.json")])  # fmt: skip
    assert bench.run(args) == 0
    printed = capsys.readouterr().out
    assert (
        "overhead" in printed and "4x budget" in printed and "polygons with the defaults" in printed
    )
    data = json.loads((tmp_path / "b.json").read_text())
    cases = [r["case"] for r in data["memory"]]
    assert cases == ["model, no raster", "at budget", "4x budget"]
    assert data["memory"][2]["raster"] == "128x512"
    assert data["throughput"]["geotiff_path_px_per_s"] > 0
    assert data["scene"]["raster"] == "320x320" and data["scene"]["seconds"] > 0
    engines = {r["case"]: r for r in data["engines"]}
    assert engines["fast path"]["agreement_with_torch_same_windows"] > 0.999
    assert engines["exact (reference)"]["agreement_with_reference"] == 1.0
    for vec in (data["vectors"], data["vectors"]["speckle"]):
        before = vec["rows"][0]
        assert before["pixel_agreement"] == 1.0 and before["min_area_px"] == 0
        assert vec["polygons_after"] <= vec["polygons_before"] == before["polygons"]
        for r in vec["rows"]:  # the polygons tile the map: no overlap, no gap
            assert abs(r["overlap_px"]) < 1e-6 and abs(r["gap_px"]) < 1e-6
            if r["simplify_px"] > 0:
                assert r["coverage_valid"]
    assert 0.0 < data["vectors"]["map_accuracy"] <= 1.0
    cost = {r["case"]: r for r in data["vector_cost"]}
    assert list(cost) == ["map only", "+ gpkg", "+ gpkg + geojson"]
    assert all(r["raster"] == "512x512" and r["seconds"] > 0 for r in cost.values())
    assert (
        cost["+ gpkg"]["extra_seconds"] == cost["+ gpkg"]["seconds"] - cost["map only"]["seconds"]
    )
    assert cost["+ gpkg"]["polygons"] > 0 and cost["+ gpkg"]["gpkg_mb"] > 0
    assert cost["+ gpkg + geojson"]["geojson_mb"] > 0
    scaling = data["vector_scaling"]
    assert {r["map"] for r in scaling} == {"256x256", "1024x1024"}
    assert "cost of the vector output" in printed and "window agreement: skipped" in printed
    assert "vectorising cost" in printed


@pytest.mark.slow
def test_window_agreement_on_a_real_aerial_image(shared_data: Path, tmp_path: Path) -> None:
    """Transductive BatchNorm, stride 4 (configs/folder.yaml's model): before, each window
    had its own statistics and 256/64 windows agreed with one whole-raster window on 0.82
    of a real 1099x846 tile; with one statistic per raster and the default 1024-px windows,
    >= 0.995 (measured 1.0)."""
    from landcover.bench.predict.windows import window_agreement

    root = shared_data / "dubai-aerial"
    if not root.is_dir():
        pytest.skip("dubai-aerial not in the shared data")
    got = window_agreement(root, tmp_path)
    assert (got["width"], got["height"]) == (1099, 846) and got["fit_pixel_accuracy"] > 0.7
    assert got["one statistic"]["agreement"] >= 0.995
    assert got["per-window statistics"]["agreement_256"] < 0.9


def test_shipped_network_is_the_folder_config() -> None:
    """The pretrained section measures the network ``configs/folder.yaml`` ships."""
    import yaml

    from landcover.bench.predict import pretrained

    root = Path(__file__).resolve().parents[2]
    model = yaml.safe_load((root / "configs" / "folder.yaml").read_text())["model"]
    assert model["arch"] == pretrained.SHIPPED_ARCH
    assert model["model_options"] == pretrained.SHIPPED_OPTIONS


@pytest.mark.slow
def test_only_pretrained_reports_window_agreement_and_a_scene(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from landcover.bench.predict import pretrained

    real = Path(__file__).resolve().parents[2] / "data" / "samples" / "dubai-aerial"
    monkeypatch.setattr(pretrained, "FIT_STEPS", 3)
    out = tmp_path / "b.json"
    out.write_text(json.dumps({"scene": {"seconds": 1.0}}))  # an earlier full run's entry
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(["--only-pretrained", "--scene", "640", "--threads", "1",
                              "--real", str(real), "--json", str(out)])  # fmt: skip
    assert bench.run(args) == 0
    result = json.loads(out.read_text())
    assert result["scene"] == {"seconds": 1.0} and "scene_previous" not in result  # kept
    p = result["pretrained"]
    assert p["fit_steps"] == 3 and p["arch"] == pretrained.SHIPPED_ARCH
    w = p["windows"]
    assert (w["window"], w["overlap"]) == (1024, 256)  # PRETRAINED_WINDOW
    assert w["classes_in_map"] >= 2  # a map with structure, not one class
    # the bar for the default windows; small windows do depend on the window
    assert w["agreement"]["default"] >= 0.995
    assert w["agreement"]["256 px"] < w["agreement"]["default"]
    s = p["scene"]
    assert s["raster"] == "640x640" and s["bands"] == 3 and s["window_used"] == 1024
    assert s["px_per_s"] == pytest.approx(640 * 640 / s["seconds"])
    assert "shipped pretrained network" in capsys.readouterr().out


def test_only_pretrained_needs_the_real_folder(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(["--only-pretrained", "--real", str(tmp_path / "absent")])
    with pytest.raises(SystemExit, match="needs the dubai-aerial folder"):
        bench.run(args)
