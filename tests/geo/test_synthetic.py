from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from landcover.geo.folder import read_regions
from landcover.geo.synthetic import (
    SYNTH_SCHEME,
    SynthConfig,
    generate_region,
    synthetic_regions,
    write_synthetic,
)

SMALL = dict(regions=8, tiles_per_region=4, tile_size=32)


def _nearest_mean_gap(cfg: SynthConfig) -> tuple[float, float]:
    """Pixel accuracy of nearest-class-mean classifiers: pooled over the other regions vs own."""
    regs = [generate_region(cfg, i) for i in range(cfg.regions)]
    xs = [r.images.transpose(0, 2, 3, 1).reshape(-1, cfg.bands).astype(float) for r in regs]
    ys = [r.masks.reshape(-1) for r in regs]

    def means(xl: list[np.ndarray], yl: list[np.ndarray]) -> np.ndarray:
        x, y = np.concatenate(xl), np.concatenate(yl)
        return np.stack(
            [x[y == c].mean(0) if (y == c).any() else np.full(cfg.bands, 1e9) for c in range(6)]
        )

    def acc(m: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
        return float((((x[:, None] - m[None]) ** 2).sum(-1).argmin(1) == y).mean())

    pooled = [
        acc(means(xs[:i] + xs[i + 1 :], ys[:i] + ys[i + 1 :]), xs[i], ys[i])
        for i in range(cfg.regions)
    ]
    own = [acc(means([xs[i]], [ys[i]]), xs[i], ys[i]) for i in range(cfg.regions)]
    return float(np.mean(pooled)), float(np.mean(own))


def test_deterministic_per_seed_and_region_index() -> None:
    a = generate_region(SynthConfig(**SMALL), 3)
    b = generate_region(SynthConfig(**{**SMALL, "regions": 5}), 3)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.masks, b.masks)
    c = generate_region(SynthConfig(**{**SMALL, "seed": 1}), 3)
    assert not np.array_equal(a.images, c.images)


def test_shapes_ranges_and_classes() -> None:
    cfg = SynthConfig(**{**SMALL, "bands": 13})
    g = generate_region(cfg, 0)
    assert g.images.shape == (4, 13, 32, 32) and g.images.dtype == np.uint16
    assert g.images.min() >= 1 and np.percentile(g.images, 99) < 10000  # reflectance x 1e4
    seen = set()
    for i in range(cfg.regions):
        m = generate_region(cfg, i).masks
        assert len(np.unique(m)) >= 3
        seen |= set(np.unique(m).tolist())
    assert seen == set(range(6))
    with pytest.raises(ValueError, match="bands"):
        SynthConfig(bands=5)


def test_pooled_appearance_is_wrong_in_a_new_region() -> None:
    """A classifier pooled over regions fails where the region's own statistics succeed."""
    pooled, own = _nearest_mean_gap(SynthConfig(**SMALL))
    assert own > 0.8 and pooled < own - 0.3, (pooled, own)
    # with the appearance knobs off, pooling loses (almost) nothing: the knobs drive the gap
    off = SynthConfig(
        **SMALL, signature_shift=0, signature_scale=0, swap_probability=0, illumination=0
    )
    pooled0, own0 = _nearest_mean_gap(off)
    assert own0 - pooled0 < 0.05, (pooled0, own0)


def test_written_geotiffs_match_memory(tmp_path: Path) -> None:
    cfg = SynthConfig(regions=2, tiles_per_region=3, tile_size=16)
    folders = write_synthetic(tmp_path / "s", cfg, progress=False)
    assert [f.name for f in folders] == ["region_000", "region_001"]
    with rasterio.open(folders[1] / "images" / "tile_002.tif") as src:
        assert src.crs.to_epsg() == 32632 and src.dtypes[0] == "uint16" and src.count == 4
        assert src.descriptions == ("B02", "B03", "B04", "B08")
        assert src.transform.a == 10.0
    with rasterio.open(folders[1] / "masks" / "tile_002.tif") as src:
        assert src.colormap(1)[1][:3] == SYNTH_SCHEME.colors[0]
    disk = read_regions(tmp_path / "s")
    mem = synthetic_regions(cfg)
    for d, m in zip(disk, mem):
        assert d.name == m.name and d.band_names == m.band_names
        for i in range(len(d)):
            assert torch.equal(d[i]["image"], m[i]["image"]) and torch.equal(
                d[i]["mask"], m[i]["mask"]
            )
    # neighbouring tiles of a region are adjacent on the ground
    with (
        rasterio.open(folders[0] / "images" / "tile_000.tif") as a,
        rasterio.open(folders[0] / "images" / "tile_001.tif") as b,
    ):
        assert b.transform.c == pytest.approx(a.transform.c + 16 * 10)
    with pytest.raises(FileExistsError):
        write_synthetic(tmp_path / "s", cfg, progress=False)
    write_synthetic(tmp_path / "s", cfg, progress=False, overwrite=True)
    assert not list((tmp_path / "s").glob(".*"))
