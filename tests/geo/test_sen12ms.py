from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from landcover.geo.datasets import detect_kind, load_regions, region_splits
from landcover.geo.errors import GeoDataError, MaskValueError
from landcover.geo.fixtures import write_sen12ms_fixture
from landcover.geo.sen12ms import IGBP_TO_DFC2020, SEN12MS


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sen12ms_fixture(tmp_path_factory.mktemp("sen12ms"), size=32, patches=3)


def _lc(root: Path, region: str, key: str) -> np.ndarray:
    season, scene = region.rsplit("_", 1)
    n = key.split("_")[0][1:]
    with rasterio.open(root / season / f"lc_{scene}" / f"{season}_lc_{scene}_p{n}.tif") as src:
        return src.read(1)


def test_layout_regions_and_split(root: Path) -> None:
    assert detect_kind(root) == "sen12ms"
    ds = SEN12MS(root, split="all")
    keys = {(r.meta["season"], r.meta["scene"]) for r in ds.regions}
    assert keys == {(s, c) for s in ("ROIs1158_spring", "ROIs1970_fall") for c in (1, 2, 3, 8)}
    # scene 8 is in the default hold-out list of Rußwurm et al.; the others are not
    test = SEN12MS(root, split="test").regions
    assert sorted(r.name for r in test) == ["ROIs1158_spring_8", "ROIs1970_fall_8"]
    train, val = SEN12MS(root, split="train").regions, SEN12MS(root, split="val").regions
    names = [r.name for r in train + val]
    assert len(names) == 6 and len(val) == 1 and len(set(names)) == 6
    assert "8" not in {n.rsplit("_", 1)[1] for n in names}
    listed = SEN12MS(root, split="val", val_scenes=["spring/2", 3], test_scenes=[1]).regions
    assert sorted(r.name for r in listed) == [
        "ROIs1158_spring_2",
        "ROIs1158_spring_3",
        "ROIs1970_fall_3",
    ]


def test_bands_sources_and_dfc_mapping(root: Path) -> None:
    region = SEN12MS(root, sources="both", split="test").regions[0]
    assert region.band_names[:3] == ("VV", "VH", "B01") and len(region.band_names) == 15
    sample = region[0]
    assert sample["image"].shape == (15, 32, 32)
    igbp = _lc(root, region.name, sample["key"])
    expected = np.asarray(IGBP_TO_DFC2020)[igbp].astype(np.int64) - 1
    expected[igbp == 0] = 255  # 0 = no data -> ignore index
    assert torch.equal(sample["mask"], torch.from_numpy(expected))
    assert (sample["mask"] == 255).any()
    assert region.scheme.num_classes == 10 and region.crs is not None


def test_igbp_scheme_band_subset_and_s1(root: Path) -> None:
    r = SEN12MS(root, scheme="igbp", s2_bands=["B04", "B08"], split="test").regions[0]
    sample = r[0]
    assert r.band_names == ("B04", "B08") and sample["image"].shape[0] == 2
    igbp = _lc(root, r.name, sample["key"]).astype(np.int64) - 1
    igbp[igbp < 0] = 255
    assert torch.equal(sample["mask"], torch.from_numpy(igbp))
    season, scene = r.name.rsplit("_", 1)
    n = sample["key"][1:]
    with rasterio.open(root / season / f"s2_{scene}" / f"{season}_s2_{scene}_p{n}.tif") as src:
        assert np.array_equal(sample["image"].numpy(), src.read([4, 8]).astype(np.float32))
    s1 = SEN12MS(root, sources="s1", split="test").regions[0]
    assert s1.band_names == ("VV", "VH") and s1[0]["image"].max() < 0  # dB values


def test_patching_256_style(root: Path) -> None:
    whole = SEN12MS(root, split="test").regions[0]
    parts = SEN12MS(root, split="test", patch_size=16).regions[0]
    assert len(parts) == 4 * len(whole)
    full = whole[0]
    quads = [parts[i] for i in range(4)]
    assert torch.equal(quads[1]["image"], full["image"][:, :16, 16:])
    assert torch.equal(quads[2]["mask"], full["mask"][16:, :16])
    with pytest.raises(ValueError, match="divide"):
        SEN12MS(root, patch_size=24)


def test_bad_inputs(tmp_path: Path, root: Path) -> None:
    with pytest.raises(GeoDataError, match="no SEN12MS patches"):
        SEN12MS(tmp_path)
    with pytest.raises(KeyError, match="valid"):
        SEN12MS(root, s2_bands=["B99"])
    broken = write_sen12ms_fixture(
        tmp_path / "b", seasons=("ROIs2017_winter",), scenes=(5,), patches=1, size=8
    )
    s2 = next((broken / "ROIs2017_winter" / "s2_5").glob("*.tif"))
    s2.unlink()
    with pytest.raises(GeoDataError, match="s2 patch missing") as err:
        SEN12MS(broken)
    assert s2.name in str(err.value)
    lc = next((broken / "ROIs2017_winter" / "lc_5").glob("*.tif"))
    with rasterio.open(lc, "r+") as dst:
        arr = dst.read()
        arr[0, 0, 0] = 42
        dst.write(arr)
    with pytest.raises(MaskValueError, match="42"):
        SEN12MS(broken, sources="s1").regions[0][0]


def test_load_regions_passes_options(root: Path) -> None:
    regions = load_regions(root, split="test", sources="s1")
    assert len(regions) == 2 and regions[0].band_names == ("VV", "VH")
    splits = region_splits(root)
    assert sorted(splits["test"]) == ["ROIs1158_spring_8", "ROIs1970_fall_8"]
    assert len(splits["train"]) == 5 and len(splits["val"]) == 1
