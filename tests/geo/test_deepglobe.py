from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from landcover.geo.datasets import detect_kind
from landcover.geo.deepglobe import DEEPGLOBE_SCHEME, DeepGlobe
from landcover.geo.errors import GeoDataError, MaskValueError
from landcover.geo.fixtures import write_deepglobe_fixture


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_deepglobe_fixture(
        tmp_path_factory.mktemp("dg"), images=8, size=64, train_subdir=True
    )


def test_masks_thresholded_and_unknown_ignored(root: Path) -> None:
    assert detect_kind(root) == "deepglobe"
    ds = DeepGlobe(root, n_regions=2)
    region = ds.regions[0]
    sample = region[0]
    assert region.band_names == ("red", "green", "blue") and sample["image"].shape == (3, 64, 64)
    raw = np.array(Image.open(root / "train" / f"{sample['key']}_mask.png"))
    assert not np.isin(raw, [0, 255]).all(), "fixture masks must not be pure 0/255"
    binary = (raw >= 128).astype(np.int64) * 255
    colours = {c: i for i, c in enumerate(DEEPGLOBE_SCHEME.colors)}
    expected = np.array(
        [[colours.get(tuple(px), 255) for px in row] for row in binary], dtype=np.int64
    )
    assert torch.equal(sample["mask"], torch.from_numpy(expected))
    assert (sample["mask"][:3, :3] == 255).all()  # Unknown -> ignore


def test_clustered_split_recovers_appearance_groups(root: Path) -> None:
    ds = DeepGlobe(root, method="cluster", n_regions=2, seed=0)
    # the fixture alternates two appearance groups: clustering must separate them exactly
    ids = sorted(ds.assignment)
    groups = [ds.assignment[i] for i in ids]
    assert len(set(groups[0::2])) == 1 and len(set(groups[1::2])) == 1 and groups[0] != groups[1]
    assert sorted(r.name for r in ds.regions) == ["cluster_00", "cluster_01"]
    again = DeepGlobe(root, method="cluster", n_regions=2, seed=0)
    assert again.assignment == ds.assignment


def test_random_split_and_named_splits(root: Path) -> None:
    ds = DeepGlobe(root, method="random", n_regions=4, seed=3)
    sizes = sorted(len(r) for r in ds.regions)
    assert sizes == [2, 2, 2, 2] and ds.regions[0].name.startswith("random_")
    test = DeepGlobe(
        root, method="random", n_regions=4, seed=3, split="test", test_regions=["random_01"]
    )
    assert [r.name for r in test.regions] == ["random_01"]
    with pytest.raises(KeyError, match="unknown regions"):
        DeepGlobe(root, n_regions=2, test_regions=["cluster_09"])


def test_patches(root: Path) -> None:
    whole = DeepGlobe(root, method="random", n_regions=2).regions[0]
    parts = DeepGlobe(root, method="random", n_regions=2, patch_size=32).regions[0]
    assert len(parts) == 4 * len(whole)
    assert torch.equal(parts[3]["mask"], whole[0]["mask"][32:, 32:])


def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(GeoDataError, match="no DeepGlobe images"):
        DeepGlobe(tmp_path)
    root = write_deepglobe_fixture(tmp_path / "d", images=2, size=16)
    mask = next(root.glob("*_mask.png"))
    arr = np.array(Image.open(mask))
    arr[0, 0] = (250, 10, 10)  # red is not a DeepGlobe colour
    Image.fromarray(arr).save(mask)
    with pytest.raises(MaskValueError) as err:
        for region in DeepGlobe(root, method="random", n_regions=1).regions:
            list(region)
    assert mask.name in str(err.value) and "(255, 0, 0)" in str(err.value)
    mask.unlink()
    with pytest.raises(GeoDataError, match="has no mask"):
        DeepGlobe(root)
