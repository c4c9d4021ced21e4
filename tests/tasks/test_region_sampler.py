from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from landcover.geo.classes import ClassScheme
from landcover.geo.normalize import BandStats, compute_band_stats
from landcover.geo.region import Region, in_memory_region
from landcover.geo.synthetic import SynthConfig, synthetic_regions
from landcover.tasks.region import RegionTaskSampler

SCHEME = ClassScheme(names=("a", "b", "c"), values=(1, 2, 3))


def _regions(n: int = 3, tiles: int = 8, size: int = 16) -> list[Region]:
    """Tiles whose band 0 equals the mask (so joint transforms can be checked pixel by pixel)."""
    g = torch.Generator().manual_seed(0)
    out = []
    for r in range(n):
        masks = torch.randint(0, 3, (tiles, size, size), generator=g)
        masks[:, 0, 0] = 255  # an unlabeled pixel per tile
        band0 = masks.float()
        band1 = torch.rand(tiles, size, size, generator=g) * 100 + 10 * r
        out.append(
            in_memory_region(f"r{r}", torch.stack([band0, band1], 1), masks, SCHEME, ("m", "x"))
        )
    return out


def test_shapes_disjoint_and_deterministic() -> None:
    regions = _regions()
    stats = compute_band_stats(regions)
    s = RegionTaskSampler(regions, shots=2, query=3, stats=stats, seed=7)
    t = s.task(5)
    assert t.support_x.shape == (2, 2, 16, 16) and t.support_x.dtype == torch.float32
    assert t.support_y.shape == (2, 16, 16) and t.support_y.dtype == torch.int64
    assert t.query_x.shape == (3, 2, 16, 16) and t.query_y.shape == (3, 16, 16)
    assert not set(t.meta["support"]) & set(t.meta["query"])
    again = s.task(5)
    assert torch.equal(t.support_x, again.support_x) and t.meta == again.meta
    other = [s.task(i).meta["support"] for i in range(6)]
    assert len({tuple(o) for o in other}) > 1
    # normalised with the given statistics, tiles picked by key
    region = next(r for r in regions if r.name == t.meta["region"])
    raw = region[region.keys.index(t.meta["support"][0])]
    assert torch.allclose(t.support_x[0], stats.normalize(raw["image"]))
    assert torch.equal(t.support_y[0], raw["mask"]) and (t.support_y[:, 0, 0] == 255).all()


def test_query_capped_by_region_size_and_errors() -> None:
    regions = _regions(tiles=4)
    t = RegionTaskSampler(regions, shots=3, query=10).task(0)
    assert len(t.query_x) == 1
    with pytest.raises(ValueError, match="fewer than shots"):
        RegionTaskSampler(regions, shots=4)
    with pytest.raises(KeyError, match="unknown region"):
        RegionTaskSampler(regions, shots=1).task(0, region="nope")
    with pytest.raises(ValueError, match="band statistics"):
        RegionTaskSampler(regions, stats=BandStats((0.0,), (1.0,), ("m",)), shots=1)


def test_crop_and_pad() -> None:
    regions = _regions(size=16)
    s = RegionTaskSampler(regions, shots=1, query=2, tile_size=8, seed=1)
    t = s.task(3)
    assert t.support_x.shape[-2:] == (8, 8)
    full = next(r for r in regions if r.name == t.meta["region"])
    mask = full[full.keys.index(t.meta["support"][0])]["mask"]
    windows = [mask[r : r + 8, c : c + 8] for r in range(9) for c in range(9)]
    assert any(torch.equal(w, t.support_y[0]) for w in windows)
    padded = RegionTaskSampler(regions, shots=1, query=1, tile_size=20).task(0)
    assert padded.support_y.shape[-2:] == (20, 20)
    assert (padded.support_y[:, 16:, :] == 255).all() and (
        padded.support_x[:, :, :, 16:] == 0
    ).all()


def test_joint_augmentation_keeps_image_and_mask_aligned() -> None:
    s = RegionTaskSampler(_regions(), shots=3, query=3, augment="flips", seed=2)
    changed = False
    for i in range(8):
        t = s.task(i)
        for x, y in ((t.support_x, t.support_y), (t.query_x, t.query_y)):
            labeled = y != 255
            # band 0 was the mask: after the joint flip/rotation it must still equal it
            assert torch.equal(x[:, 0][labeled], y[labeled].float())
        plain = RegionTaskSampler(_regions(), shots=3, query=3, seed=2).task(i)
        changed |= not torch.equal(plain.support_y, t.support_y)
    assert changed, "augmentation never changed a tile"
    # affine: masks resampled nearest (values stay classes), uncovered pixels become ignore
    affine = RegionTaskSampler(_regions(), shots=3, query=3, augment="affine", seed=2)
    ys = torch.cat([affine.task(i).support_y for i in range(8)])
    assert set(ys.unique().tolist()) <= {0, 1, 2, 255}
    with pytest.raises(KeyError, match="flips"):
        RegionTaskSampler(_regions(), shots=1, augment="bogus")


def test_min_support_classes() -> None:
    regions = _regions(tiles=6)
    for r in regions:  # make half the tiles single-class
        for i in range(3):
            tile = r[i]
            tile["mask"].fill_(0)
    s = RegionTaskSampler(regions, shots=1, query=1, min_support_classes=2, seed=0)
    for i in range(20):
        t = s.task(i)
        labels = t.support_y[t.support_y != 255].unique()
        assert len(labels) >= 2 and t.meta["support_classes"] == labels.tolist()
    with pytest.raises(ValueError, match="at least 4 classes"):
        RegionTaskSampler(regions, shots=1, min_support_classes=4, max_tries=5).task(0)


def test_remap_and_ignore_index() -> None:
    regions = _regions()
    base = RegionTaskSampler(regions, shots=1, query=1, seed=3).task(0)
    remapped = RegionTaskSampler(regions, shots=1, query=1, seed=3, remap={0: 1, 1: 0}).task(0)
    y, z = base.support_y, remapped.support_y
    assert (z[y == 0] == 1).all() and (z[y == 1] == 0).all() and (z[y == 2] == 255).all()
    neg = RegionTaskSampler(regions, shots=1, query=1, seed=3, ignore_index=-100).task(0)
    assert (neg.support_y[y == 255] == -100).all()


def test_dataset_protocol_and_shot_lists() -> None:
    regions = synthetic_regions(SynthConfig(regions=2, tiles_per_region=6, tile_size=16))
    s = RegionTaskSampler(
        regions, shots=[1, 2], query=2, length=6, stats=compute_band_stats(regions)
    )
    batches = list(DataLoader(s, batch_size=3, collate_fn=list))
    assert len(batches) == 2 and all(len(b) == 3 for b in batches)
    assert {t.meta["shots"] for b in batches for t in b} <= {1, 2}
    assert s.task(0, shots=2, region="region_001").meta["region"] == "region_001"


def test_whole_tiles_of_different_sizes_are_a_clear_error() -> None:
    """Real tiles differ by a pixel (dubai-aerial: 643 and 644 rows); with tile_size=None
    the task says so and what to do (before: torch.stack's "expects each tensor to be
    equal size")."""
    from landcover.geo.region import TileRef

    def tile(h: int) -> TileRef:
        sample = {"image": torch.zeros(2, h, 12), "mask": torch.zeros(h, 12, dtype=torch.long)}
        return TileRef(f"t{h}", lambda: sample)

    region = Region("mixed", SCHEME, ("m", "x"), [tile(10), tile(11), tile(10), tile(11)])
    sampler = RegionTaskSampler([region], shots=2, query=2, seed=0)
    with pytest.raises(ValueError, match=r"'mixed' differ in size \(12×10, 12×11 px\).*tile_size"):
        sampler.task(0)
    assert RegionTaskSampler([region], shots=2, query=2, tile_size=8).task(0).support_x.shape == (
        2, 2, 8, 8)  # fmt: skip
