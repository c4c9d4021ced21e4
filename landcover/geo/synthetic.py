"""Synthetic regions: procedural land-cover maps whose appearance shifts from region to region.

Every region is one procedural landscape cut into tiles. All regions share the *structure*
of land cover (rectangular field parcels, forest patches, lakes and meandering rivers,
straight roads with settlements along them, patches of bare ground) but each region draws
its own *appearance*:

* per-class spectral signatures: a Sentinel-2-like reflectance spectrum per class, moved per
  region by a random gain (``signature_scale``, log-normal) and a random shift
  (``signature_shift``, in units of the between-class spread of each band), and with
  probability ``swap_probability`` (twice per region) two classes exchange signatures; the
  classes' signatures therefore overlap *across* regions (forest in one region looks like
  fields in another) while staying apart within a region (``min_separation``);
* a region-wide illumination gain per band (``illumination``);
* texture: multiplicative within-class variation with a per-region correlation length drawn
  from ``texture_scale`` and amplitude ``texture``, per-parcel crop variation, building
  blocks in settlements;
* class frequencies: per-region fractions of forest / bare ground / water, numbers of rivers
  and roads, settlement density;
* sensor noise (``noise``) after a small point-spread blur (``blur``).

A model pooled over regions thus learns the shared shapes but cannot know which spectrum
means which class in a new region; a few labeled tiles tell it. Values are reflectance ×
10000 in uint16 (0 is nodata and never produced), 4 bands (B02, B03, B04, B08) or all 13
Sentinel-2 bands. Regions are deterministic in ``(seed, region index)``: region ``i`` is the
same whatever the number of regions generated.

:func:`write_synthetic` writes the users' folder format (:mod:`landcover.geo.folder`) with
real GeoTIFFs in ``crs`` (10 m pixels, each region at its own place);
:func:`synthetic_regions` returns the same regions in memory.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from rasterio.crs import CRS
from rasterio.transform import Affine
from scipy import ndimage
from tqdm import tqdm

from landcover.geo.classes import ClassScheme
from landcover.geo.landscape import FIELDS, SETTLEMENT, land_cover_map, noise_field
from landcover.geo.region import Region, in_memory_region

#: Land-cover classes of the synthetic regions (mask values 1..6, 0 = unlabeled).
SYNTH_SCHEME = ClassScheme(
    names=("fields", "forest", "water", "road", "settlement", "bare"),
    values=(1, 2, 3, 4, 5, 6),
    colors=((255, 211, 0), (34, 139, 34), (30, 100, 220), (90, 90, 90), (220, 40, 40),
            (190, 150, 100)),
    ignore_value=0,
)  # fmt: skip

#: Sentinel-2 band names.
S2_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10",
            "B11", "B12")  # fmt: skip
#: Bands of the 4-band variant (blue, green, red, near infrared at 10 m).
S2_BANDS_4 = ("B02", "B03", "B04", "B08")

#: Typical surface reflectance per class (rows) and Sentinel-2 band (columns).
BASE_SIGNATURES = np.array(
    [
        [0.040, 0.050, 0.080, 0.050, 0.120, 0.300, 0.380, 0.400, 0.420, 0.400, 0.010, 0.220, 0.110],
        [0.030, 0.030, 0.050, 0.030, 0.080, 0.220, 0.270, 0.300, 0.310, 0.300, 0.005, 0.150, 0.070],
        [0.070, 0.060, 0.050, 0.030, 0.025, 0.020, 0.018, 0.015, 0.012, 0.010, 0.001, 0.008, 0.005],
        [0.090, 0.100, 0.110, 0.120, 0.130, 0.140, 0.150, 0.160, 0.160, 0.160, 0.010, 0.180, 0.160],
        [0.110, 0.120, 0.140, 0.160, 0.170, 0.190, 0.200, 0.210, 0.220, 0.210, 0.020, 0.250, 0.220],
        [0.100, 0.120, 0.160, 0.220, 0.250, 0.270, 0.280, 0.300, 0.310, 0.300, 0.020, 0.380, 0.330],
    ]
)
#: Relative within-class texture amplitude per class.
TEXTURE_AMPLITUDE = np.array([0.06, 0.18, 0.04, 0.06, 0.25, 0.10])


@dataclass
class SynthConfig:
    """All knobs of the synthetic regions; the defaults are the demo's embedded dataset.

    Attributes:
        regions: Number of regions.
        tiles_per_region: Tiles per region (cut from one landscape of about that many tiles).
        tile_size: Tile side in pixels.
        bands: 4 (B02, B03, B04, B08) or 13 (all Sentinel-2 bands).
        seed: Seed; region ``i`` depends only on ``(seed, i)``.
        signature_shift: Std of the per-region, per-class, per-band signature shift, in units
            of the between-class spread of the band. The main difficulty knob.
        signature_scale: Std of the per-region, per-class log gain of the signatures.
        swap_probability: Probability (per draw, two draws per region) that two classes
            exchange signatures in a region.
        min_separation: Minimum RMS distance (spread units) between two classes' signatures
            within a region; signatures are redrawn until it holds.
        illumination: Std of the region-wide log gain per band.
        noise: Std of the sensor noise, in spread units.
        texture: Multiplier of the within-class texture amplitude.
        texture_scale: Range (pixels) of the per-region texture correlation length.
        blur: Std (pixels) of the Gaussian point-spread function.
        pixel_size: Ground size of a pixel in CRS units (metres).
        crs: CRS of the GeoTIFFs.
    """

    regions: int = 16
    tiles_per_region: int = 32
    tile_size: int = 64
    bands: int = 4
    seed: int = 0
    signature_shift: float = 0.8
    signature_scale: float = 0.25
    swap_probability: float = 0.5
    min_separation: float = 0.6
    illumination: float = 0.15
    noise: float = 0.05
    texture: float = 1.0
    texture_scale: tuple[float, float] = (1.5, 6.0)
    blur: float = 0.6
    pixel_size: float = 10.0
    crs: str = "EPSG:32632"

    def __post_init__(self) -> None:
        if self.bands not in (4, 13):
            raise ValueError(f"bands must be 4 or 13; got {self.bands}")
        if self.regions < 1 or self.tiles_per_region < 1 or self.tile_size < 8:
            raise ValueError("need regions >= 1, tiles_per_region >= 1 and tile_size >= 8")
        if not 0.0 <= self.swap_probability <= 1.0:
            raise ValueError(f"swap_probability must be in [0, 1]; got {self.swap_probability}")
        self.texture_scale = (float(self.texture_scale[0]), float(self.texture_scale[1]))

    @property
    def band_names(self) -> tuple[str, ...]:
        """Names of the generated bands."""
        return S2_BANDS_4 if self.bands == 4 else S2_BANDS

    def band_indices(self) -> list[int]:
        """Columns of :data:`BASE_SIGNATURES` that are generated."""
        return [S2_BANDS.index(b) for b in self.band_names]


@dataclass
class SynthRegion:
    """One generated region in memory.

    Attributes:
        name: ``region_XXX``.
        images: ``(N, B, T, T)`` uint16 reflectance × 10000.
        masks: ``(N, T, T)`` uint8 class indices (0..5).
        transforms: Affine transform of each tile.
        signatures: ``(6, B)`` region signatures (reflectance) before texture and noise.
    """

    name: str
    images: np.ndarray
    masks: np.ndarray
    transforms: list[Affine]
    signatures: np.ndarray


def region_signatures(rng: np.random.Generator, config: SynthConfig) -> np.ndarray:
    """Per-class spectral signatures of one region, ``(6, B)`` reflectance."""
    base = BASE_SIGNATURES[:, config.band_indices()]
    spread = base.std(axis=0) + 1e-3
    for _ in range(100):
        sig = base * np.exp(rng.normal(0, config.signature_scale, base.shape))
        sig = sig + config.signature_shift * spread * rng.standard_normal(base.shape)
        for _ in range(2):
            if rng.random() < config.swap_probability:
                a, b = rng.choice(len(base), 2, replace=False)
                sig[[a, b]] = sig[[b, a]]
        sig = np.clip(sig, 0.003, 0.9)
        d = (sig[:, None, :] - sig[None, :, :]) / spread
        dist = np.sqrt((d**2).mean(-1)) + np.eye(len(base)) * 1e9
        if dist.min() >= config.min_separation:
            break
    return sig * np.exp(rng.normal(0, config.illumination, (1, base.shape[1])))


def generate_region(config: SynthConfig, index: int) -> SynthRegion:
    """Generate region ``index`` of the dataset described by ``config`` (in memory)."""
    rng = np.random.default_rng([config.seed, index])
    t, n = config.tile_size, config.tiles_per_region
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    lc, layers = land_cover_map(rng, rows * t, cols * t)
    sig = region_signatures(rng, config)
    spread = BASE_SIGNATURES[:, config.band_indices()].std(axis=0) + 1e-3
    # within-class texture: multiplicative brightness with a regional correlation length
    amp = TEXTURE_AMPLITUDE * config.texture * rng.uniform(0.5, 1.5)
    tex = noise_field(rng, lc.shape, rng.uniform(*config.texture_scale))
    parcel_gain = rng.normal(0, 0.12 * config.texture, layers["parcels"].max() + 1)
    parcel_tilt = rng.normal(0, 0.3 * config.texture, (layers["parcels"].max() + 1, len(spread)))
    blocks = rng.normal(0, 1, (lc.shape[0] // 3 + 1, lc.shape[1] // 3 + 1))
    blocks = np.kron(blocks, np.ones((3, 3)))[: lc.shape[0], : lc.shape[1]]
    gain = 1 + amp[lc] * tex
    gain = gain + np.where(lc == FIELDS, parcel_gain[layers["parcels"]], 0)
    gain = gain + np.where(lc == SETTLEMENT, amp[SETTLEMENT] * blocks, 0)
    image = sig[lc] * np.clip(gain, 0.2, 3.0)[..., None]  # (H, W, B)
    tilt = np.where(lc[..., None] == FIELDS, parcel_tilt[layers["parcels"]] * spread, 0)
    image = np.moveaxis(image + tilt, -1, 0)
    if config.blur > 0:
        image = ndimage.gaussian_filter(image, (0, config.blur, config.blur))
    image = image + config.noise * spread[:, None, None] * rng.standard_normal(image.shape)
    image = np.clip(np.round(image * 10000), 1, 65535).astype(np.uint16)
    origin_x = 300000.0 + (index % 50) * 20000.0
    origin_y = 5000000.0 + (index // 50) * 20000.0
    images, masks, transforms = [], [], []
    for k in range(n):
        r, c = divmod(k, cols)
        images.append(image[:, r * t : (r + 1) * t, c * t : (c + 1) * t])
        masks.append(lc[r * t : (r + 1) * t, c * t : (c + 1) * t])
        transforms.append(
            Affine(config.pixel_size, 0, origin_x + c * t * config.pixel_size,
                   0, -config.pixel_size, origin_y - r * t * config.pixel_size)
        )  # fmt: skip
    return SynthRegion(f"region_{index:03d}", np.stack(images), np.stack(masks), transforms, sig)


def synthetic_regions(config: SynthConfig | None = None) -> list[Region]:
    """The synthetic regions in memory (same content as :func:`write_synthetic` writes)."""
    config = config or SynthConfig()
    out = []
    for i in range(config.regions):
        g = generate_region(config, i)
        out.append(
            in_memory_region(
                g.name, torch.from_numpy(g.images.astype(np.float32)),
                torch.from_numpy(g.masks.astype(np.int64)), SYNTH_SCHEME, config.band_names,
                keys=[f"tile_{k:03d}" for k in range(len(g.images))],
                crs=CRS.from_string(config.crs),
                meta={"synthetic": True, "index": i},
            )
        )  # fmt: skip
    return out


def _write_tif(path: Path, data: np.ndarray, transform: Affine, crs: CRS, **extra: Any) -> None:
    profile = {"driver": "GTiff", "width": data.shape[-1], "height": data.shape[-2],
               "count": data.shape[0], "dtype": str(data.dtype), "crs": crs,
               "transform": transform, "compress": "deflate"}  # fmt: skip
    with rasterio.open(path, "w", **profile, nodata=extra.get("nodata")) as dst:
        dst.write(data)
        for i, name in enumerate(extra.get("descriptions", ()), start=1):
            dst.set_band_description(i, name)
        if "colormap" in extra:
            dst.write_colormap(1, extra["colormap"])


def write_synthetic(
    out: str | Path,
    config: SynthConfig | None = None,
    *,
    progress: bool = True,
    overwrite: bool = False,
) -> list[Path]:
    """Write the synthetic regions in the users' folder format.

    Writes ``out/classes.yaml``, ``out/synth.json`` (the config and per-region signatures) and
    ``out/region_XXX/{images,masks}/tile_YYY.tif`` (+ a copy of ``classes.yaml`` per region
    so that each region folder stands alone). Each region is written to a temporary folder
    and renamed into place.

    Args:
        out: Output folder.
        config: Knobs (defaults: the demo's dataset).
        progress: Show a progress bar.
        overwrite: Replace existing region folders; otherwise a non-empty ``out`` is an error.

    Returns:
        The region folders.
    """
    config = config or SynthConfig()
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} is not empty; choose another --out or pass --force")
    out.mkdir(parents=True, exist_ok=True)
    crs = CRS.from_string(config.crs)
    colormap = {v: (*c, 255) for v, c in zip(SYNTH_SCHEME.values or (), SYNTH_SCHEME.colors)}
    colormap[0] = (0, 0, 0, 0)
    values = np.array(SYNTH_SCHEME.raw_values(), dtype=np.uint8)
    folders, summary = [], []
    for i in tqdm(range(config.regions), desc="synth regions", disable=not progress):
        g = generate_region(config, i)
        tmp = out / f".{g.name}.tmp{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "images").mkdir(parents=True)
        (tmp / "masks").mkdir()
        for k, (img, mask, tr) in enumerate(zip(g.images, g.masks, g.transforms)):
            _write_tif(tmp / "images" / f"tile_{k:03d}.tif", img, tr, crs, nodata=0,
                       descriptions=config.band_names)  # fmt: skip
            _write_tif(tmp / "masks" / f"tile_{k:03d}.tif", values[mask][None], tr, crs,
                       colormap=colormap)  # fmt: skip
        SYNTH_SCHEME.save(tmp / "classes.yaml")
        final = out / g.name
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        folders.append(final)
        summary.append({"name": g.name, "signatures": np.round(g.signatures, 4).tolist()})
    SYNTH_SCHEME.save(out / "classes.yaml")
    meta = {"config": asdict(config), "band_names": list(config.band_names), "regions": summary}
    tmp_json = out / ".synth.json.tmp"
    tmp_json.write_text(json.dumps(meta, indent=1), encoding="utf-8")
    tmp_json.replace(out / "synth.json")
    return folders
