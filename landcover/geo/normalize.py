"""Per-band normalisation statistics, computed over training regions, stored as a small JSON.

The statistics travel with the model (the model bundle stores :meth:`BandStats.to_dict`), so
adaptation and prediction normalise new rasters exactly as training did:
``x_normalised = (x - mean[band]) / std[band]``. Only valid pixels count: tiles that carry a
``"valid"`` mask have their no-data pixels skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from landcover.geo.errors import GeoDataError
from landcover.geo.region import Region


@dataclass(frozen=True)
class BandStats:
    """Mean and standard deviation of every band.

    Attributes:
        mean: Mean per band (raw units).
        std: Standard deviation per band (raw units, > 0).
        band_names: Band names, in order.
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    band_names: tuple[str, ...]

    def __post_init__(self) -> None:
        if not len(self.mean) == len(self.std) == len(self.band_names):
            raise ValueError(
                f"mean ({len(self.mean)}), std ({len(self.std)}) and band_names "
                f"({len(self.band_names)}) must have one entry per band"
            )
        if any(not s > 0 for s in self.std):
            raise ValueError(f"standard deviations must be > 0; got {list(self.std)}")

    @property
    def num_bands(self) -> int:
        """Number of bands."""
        return len(self.mean)

    def normalize(self, x: Tensor) -> Tensor:
        """Normalise ``(C, H, W)`` or ``(N, C, H, W)`` raw values band by band."""
        c = x.shape[-3]
        if c != self.num_bands:
            raise ValueError(
                f"image has {c} bands but the statistics have {self.num_bands} "
                f"({', '.join(self.band_names)}); use images with the training bands"
            )
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(c, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(c, 1, 1)
        return (x - mean) / std

    def denormalize(self, x: Tensor) -> Tensor:
        """Inverse of :meth:`normalize`."""
        c = x.shape[-3]
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(c, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(c, 1, 1)
        return x * std + mean

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {"band_names": list(self.band_names), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BandStats:
        """Inverse of :meth:`to_dict`."""
        try:
            return cls(
                mean=tuple(float(v) for v in data["mean"]),
                std=tuple(float(v) for v in data["std"]),
                band_names=tuple(str(b) for b in data["band_names"]),
            )
        except KeyError as err:
            raise KeyError(
                f"band statistics need 'mean', 'std' and 'band_names'; missing {err}"
            ) from None

    def save(self, path: str | Path) -> Path:
        """Write as JSON atomically."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2), encoding="utf-8")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> BandStats:
        """Read a JSON written by :meth:`save`."""
        try:
            return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError, KeyError, ValueError) as err:
            raise GeoDataError(f"cannot read band statistics: {err}", path) from None


def compute_band_stats(
    regions: Iterable[Region],
    max_tiles_per_region: int | None = None,
    band_names: Sequence[str] | None = None,
) -> BandStats:
    """Mean and std of every band over the valid pixels of the regions' tiles.

    Sums are accumulated in float64 (sum and sum of squares about a running shift, so large
    raw values do not lose precision), one tile at a time.

    Args:
        regions: Training regions.
        max_tiles_per_region: Use at most this many tiles of each region (evenly spaced).
        band_names: Names to store; by default the first region's.
    """
    count = None
    total = sq = shift = None
    names: tuple[str, ...] | None = tuple(band_names) if band_names is not None else None
    for region in regions:
        names = names or region.band_names
        n = len(region)
        step = 1 if max_tiles_per_region is None else max(1, n // max_tiles_per_region)
        for i in list(range(0, n, step))[: max_tiles_per_region or n]:
            sample = region[i]
            x = sample["image"].double().flatten(1)
            if "valid" in sample:
                x = x[:, sample["valid"].flatten()]
            if shift is None:
                shift = x.mean(1) if x.shape[1] else torch.zeros(x.shape[0], dtype=torch.float64)
                total = torch.zeros_like(shift)
                sq = torch.zeros_like(shift)
                count = 0
            if x.shape[0] != shift.shape[0]:
                raise ValueError(
                    f"region {region.name!r} has {x.shape[0]} bands, earlier ones {shift.shape[0]}"
                )
            d = x - shift[:, None]
            total += d.sum(1)
            sq += (d * d).sum(1)
            count += x.shape[1]
    if not count:
        raise ValueError("no pixels to compute band statistics from; give non-empty regions")
    assert total is not None and sq is not None and shift is not None
    mean_d = total / count
    var = (sq / count - mean_d**2).clamp_min(0)
    std = var.sqrt().clamp_min(1e-6)
    names = names or tuple(f"band{i + 1}" for i in range(len(std)))
    return BandStats(tuple((shift + mean_d).tolist()), tuple(std.tolist()), tuple(names))
