from __future__ import annotations

from pathlib import Path

import pytest
import torch

from landcover.geo.classes import ClassScheme
from landcover.geo.errors import GeoDataError
from landcover.geo.normalize import BandStats, compute_band_stats
from landcover.geo.region import in_memory_region

SCHEME = ClassScheme(names=("a", "b"), values=(1, 2))


def test_stats_match_torch_over_all_pixels(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    imgs = [
        torch.rand(2, 2, 5, 5, generator=g, dtype=torch.float64) * 1000 + 5000 for _ in range(2)
    ]
    masks = torch.zeros(2, 5, 5, dtype=torch.long)
    regions = [in_memory_region(f"r{i}", x, masks, SCHEME, ("x", "y")) for i, x in enumerate(imgs)]
    stats = compute_band_stats(regions)
    flat = torch.cat([x.float().double().permute(1, 0, 2, 3).flatten(1) for x in imgs], 1)
    assert torch.allclose(torch.tensor(stats.mean, dtype=torch.float64), flat.mean(1), rtol=1e-9)
    assert torch.allclose(
        torch.tensor(stats.std, dtype=torch.float64), flat.std(1, unbiased=False), rtol=1e-6
    )
    z = stats.normalize(imgs[0].float())
    assert z.shape == imgs[0].shape and torch.allclose(
        stats.denormalize(z), imgs[0].float(), rtol=1e-5
    )
    assert BandStats.load(stats.save(tmp_path / "stats.json")) == stats
    with pytest.raises(ValueError, match="bands"):
        stats.normalize(torch.zeros(3, 4, 4))


def test_nodata_pixels_skipped() -> None:
    x = torch.tensor([[[1.0, 3.0], [1000.0, 1000.0]]])
    region = in_memory_region("r", x[None], torch.zeros(1, 2, 2, dtype=torch.long), SCHEME, ("b",))
    valid = torch.tensor([[True, True], [False, False]])
    tile = region.tiles[0]
    region.tiles[0] = type(tile)(
        tile.key, lambda: {"image": x, "mask": torch.zeros(2, 2), "valid": valid}
    )
    stats = compute_band_stats([region])
    assert stats.mean == (2.0,) and stats.std == (1.0,)


def test_bad_stats(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="> 0"):
        BandStats((0.0,), (0.0,), ("b",))
    (tmp_path / "s.json").write_text("{}")
    with pytest.raises(GeoDataError, match=r"s\.json"):
        BandStats.load(tmp_path / "s.json")
