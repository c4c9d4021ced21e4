"""The multispectral scene generator: float32, -99999 nodata, values 1..7, quadrants."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from landcover.cli import main as landcover
from landcover.geo.folder import read_regions
from landcover.geo.scene import (
    QUADRANTS,
    SCENE_BANDS,
    SCENE_SCHEME,
    SceneConfig,
    generate_scene,
    scene_signatures,
    write_scene_dataset,
)

SMALL = SceneConfig(size=128, tile_size=32)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_scene_dataset(tmp_path_factory.mktemp("scene") / "case", SMALL)


def test_scene_is_float32_with_a_declared_finite_nodata_around_a_ragged_footprint(
    written: dict[str, Path],
) -> None:
    with rasterio.open(written["scene"]) as src:
        assert src.count == 5 and src.dtypes == ("float32",) * 5
        assert src.nodata == -99999.0 and src.descriptions == SCENE_BANDS
        assert src.res == (28.5, 28.5) and src.crs.to_epsg() == 32637
        image = src.read()
    outside = image[0] == -99999.0
    # nodata in every band at once, real reflectance everywhere else
    assert ((image == -99999.0) == outside[None]).all()
    assert np.isfinite(image[:, ~outside]).all()
    assert image[:, ~outside].min() >= 0.0 and image[:, ~outside].max() <= 1.0
    # the footprint: corners out, centre in, a tilted ragged edge (not a rectangle)
    assert outside[0, 0] and outside[-1, -1] and outside[0, -1] and outside[-1, 0]
    assert not outside[32:96, 32:96].any()
    assert 0.55 < (~outside).mean() < 0.95
    first_valid = [int(np.argmax(~row)) for row in outside if (~row).any()]
    assert len(set(first_valid)) > 10


def test_reference_holds_class_values_one_to_seven_on_the_same_footprint(
    written: dict[str, Path],
) -> None:
    with rasterio.open(written["reference"]) as ref, rasterio.open(written["scene"]) as img:
        assert ref.dtypes == ("float32",) and ref.nodata == -99999.0
        mask, image = ref.read(1), img.read(1)
    assert ((mask == -99999.0) == (image == -99999.0)).all()
    assert set(np.unique(mask[mask != -99999.0]).tolist()) <= {1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0}
    assert len(np.unique(mask[mask != -99999.0])) >= 4


def test_quadrant_regions_read_back_with_nodata_as_ignore(written: dict[str, Path]) -> None:
    regions = {r.name: r for r in read_regions(written["regions"])}
    assert sorted(regions) == sorted(QUADRANTS)
    for region in regions.values():
        assert region.scheme.names == SCENE_SCHEME.names
        assert tuple(region.band_names) == SCENE_BANDS
        assert 1 <= len(region) <= 4  # 2 × 2 tiles of 32 px per 64-px quadrant
        for i in range(len(region)):
            s = region[i]
            assert s["image"].shape == (5, 32, 32)
            invalid = ~s["valid"]
            assert (s["mask"][invalid] == SCENE_SCHEME.ignore_index).all()
            assert (s["mask"][~invalid] < 7).all()
    # the north-west corner tile is partly outside the footprint
    assert not bool(regions["north_west"][0]["valid"].all())


def test_the_scene_is_deterministic_and_its_classes_overlap() -> None:
    a_img, a_cls = generate_scene(SMALL)
    b_img, b_cls = generate_scene(SMALL)
    assert np.array_equal(a_img, b_img) and np.array_equal(a_cls, b_cls)
    c_img, _ = generate_scene(SceneConfig(size=128, tile_size=32, seed=1))
    assert not np.array_equal(a_img, c_img)
    # grassland sits near cropland in the visible bands and apart in the infrared
    sig = scene_signatures()
    cropland, grassland = sig[0], sig[6]
    assert np.abs(cropland[:3] - grassland[:3]).max() < 0.01
    assert abs(cropland[4] - grassland[4]) > 0.05


def test_data_scene_command_writes_the_case_and_refuses_to_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "case"
    argv = ["data", "scene", "--out", str(out), "--size", "64", "--tile-size", "16"]
    assert landcover(argv) == 0
    assert "nodata -99999" in capsys.readouterr().out
    assert (out / "scene.tif").is_file() and (out / "regions" / "south_east" / "masks").is_dir()
    assert landcover(argv) == 2
    assert "not empty" in capsys.readouterr().err
    assert landcover([*argv, "--force"]) == 0
    assert landcover(["data", "scene", "--out", str(tmp_path / "x"), "--size", "16"]) == 2
