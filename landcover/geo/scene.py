"""A user's multispectral scene: float32 reflectance, a ragged footprint, -99999 nodata.

Issue 23 came from an analyst whose case none of the other generators makes: one 5-band
float32 satellite scene at 28.5 m, nodata ``-99999`` around the footprint, a float32 mask
holding class values 1…7 (same nodata), cut into four quadrant regions of 64-px tiles.
:func:`write_scene_dataset` makes that case, deterministically in ``seed``, from the shared
pieces of the synthetic regions:

* land cover from :func:`landcover.geo.landscape.land_cover_map` (fields, forest, water,
  roads, settlements, bare ground), with a seventh class: a share of the field parcels is
  grassland, whose spectrum sits close to cropland's (the two overlap in the visible bands
  and differ mostly in the near and short-wave infrared);
* Landsat-like bands (blue, green, red, near infrared, short-wave infrared 1) taken from the
  Sentinel-2 signatures of :data:`landcover.geo.synthetic.BASE_SIGNATURES`;
* appearance that drifts *within* the scene, as in a real scene spanning farmland of
  different crop calendars, soils and haze: every class's spectrum is multiplied by its own
  smooth field across the scene (log gain with std ``drift``), a smooth haze adds to the
  short bands, and within-class texture, per-parcel variation, blur and sensor noise follow
  :mod:`landcover.geo.synthetic`. Quadrants therefore share classes and shapes but not
  exactly their spectra: what a model learnt on three quadrants is a little off on the
  fourth, the case few-shot adaptation is for;
* a footprint: a tilted, ragged-edged polygon (a satellite path across the UTM grid) outside
  of which every band and the mask hold ``nodata``.

Written (the users' folder format, :mod:`landcover.geo.folder`)::

    OUT/scene.tif            whole scene, float32 reflectance, nodata -99999, band names
    OUT/reference.tif        whole-scene reference, float32 class values 1..7, nodata -99999
    OUT/classes.yaml         the class file (values 1..7)
    OUT/regions/classes.yaml
    OUT/regions/{north_west,north_east,south_west,south_east}/{images,masks}/r{R}_c{C}.tif
                             64-px tiles of each quadrant; tiles without a valid pixel are
                             left out

``landcover data scene --out OUT`` runs it.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.transform import Affine
from scipy import ndimage

from landcover.geo.classes import ClassScheme
from landcover.geo.landscape import BARE, FIELDS, FOREST, SETTLEMENT, land_cover_map, noise_field
from landcover.geo.synthetic import BASE_SIGNATURES, S2_BANDS, TEXTURE_AMPLITUDE

#: Bands of the scene (Landsat-like names) and the Sentinel-2 columns their spectra come from.
SCENE_BANDS = ("blue", "green", "red", "nir", "swir1")
_S2_COLUMNS = [S2_BANDS.index(b) for b in ("B02", "B03", "B04", "B08", "B11")]

#: Class index of grassland (field parcels drawn as grassland), after the landscape's six.
GRASSLAND = 6

#: The scene's classes, values 1..7 as in the issue's dataset.
SCENE_SCHEME = ClassScheme(
    names=("cropland", "forest", "water", "road", "built-up", "bare", "grassland"),
    values=(1, 2, 3, 4, 5, 6, 7),
    colors=((255, 211, 0), (34, 139, 34), (30, 100, 220), (90, 90, 90), (220, 40, 40),
            (190, 150, 100), (150, 220, 110)),
)  # fmt: skip

#: Quadrant region names, in row-major order.
QUADRANTS = ("north_west", "north_east", "south_west", "south_east")


def scene_signatures() -> np.ndarray:
    """``(7, 5)`` mean reflectance per class and band (grassland last)."""
    base = BASE_SIGNATURES[:, _S2_COLUMNS]
    # grassland: cropland's visible bands, less near infrared, more short-wave infrared
    grass = base[FIELDS] * np.array([1.05, 1.0, 1.1, 0.8, 1.3])
    return np.vstack([base, grass])


@dataclass
class SceneConfig:
    """Knobs of the scene; the defaults are the committed multispectral case.

    Attributes:
        size: Scene side in pixels (the quadrants are ``size / 2`` square).
        tile_size: Tile side of the region folders in pixels.
        seed: Seed; the whole output depends only on it and the other knobs.
        drift: Std of each class's smooth log gain per band across the scene.
        drift_scale: Correlation length of the drift and haze fields, as a fraction of
            ``size``.
        haze: Std of the smooth additive haze (reflectance, blue; less at longer bands).
        grassland: Share of field parcels that are grassland.
        texture: Multiplier of the within-class texture amplitude.
        noise: Std of the sensor noise, relative to the between-class spread of each band.
        blur: Std (pixels) of the Gaussian point-spread function.
        footprint_tilt: Tilt of the footprint in degrees.
        footprint_margin: Inset of the footprint from the scene edges, as a fraction of
            ``size`` (the corners of the square fall outside it).
        nodata: Nodata value of the scene and the reference.
        pixel_size: Ground size of a pixel in metres.
        crs: CRS of the GeoTIFFs.
    """

    size: int = 512
    tile_size: int = 64
    seed: int = 0
    drift: float = 0.25
    drift_scale: float = 0.35
    haze: float = 0.02
    grassland: float = 0.35
    texture: float = 1.0
    noise: float = 0.08
    blur: float = 0.6
    footprint_tilt: float = 12.0
    footprint_margin: float = 0.06
    nodata: float = -99999.0
    pixel_size: float = 28.5
    crs: str = "EPSG:32637"

    def __post_init__(self) -> None:
        if self.tile_size < 8 or self.size < 2 * self.tile_size:
            raise ValueError(
                f"need tile_size >= 8 and size >= 2 * tile_size (one tile per quadrant); "
                f"got size {self.size}, tile_size {self.tile_size}"
            )
        if not 0.0 <= self.grassland <= 1.0:
            raise ValueError(f"grassland must be in [0, 1]; got {self.grassland}")
        if np.isnan(self.nodata) or 0.0 <= self.nodata <= 1.0:
            raise ValueError(
                f"nodata must be a finite value outside reflectance [0, 1]; got {self.nodata}"
            )


def footprint(rng: np.random.Generator, config: SceneConfig) -> np.ndarray:
    """``(size, size)`` bool: inside the tilted, ragged-edged footprint."""
    n = config.size
    rows, cols = np.mgrid[0:n, 0:n].astype(float) - (n - 1) / 2
    a = np.deg2rad(config.footprint_tilt)
    u = np.cos(a) * cols + np.sin(a) * rows
    v = -np.sin(a) * cols + np.cos(a) * rows
    ragged = 0.015 * n * noise_field(rng, (n, n), n / 40)
    half = n / 2 - config.footprint_margin * n
    return (np.abs(u) + ragged < half) & (np.abs(v) - ragged < half)


def generate_scene(config: SceneConfig) -> tuple[np.ndarray, np.ndarray]:
    """The scene in memory.

    Returns:
        ``(image, classes)``: ``(5, size, size)`` float32 reflectance with ``nodata`` outside
        the footprint, and ``(size, size)`` int64 class indices 0..6 with -1 outside.
    """
    rng = np.random.default_rng(config.seed)
    n = config.size
    lc, layers = land_cover_map(rng, n, n)
    lc = lc.astype(np.int64)
    parcels = layers["parcels"]
    grass_parcel = rng.random(parcels.max() + 1) < config.grassland
    lc[(lc == FIELDS) & grass_parcel[parcels]] = GRASSLAND
    sig = scene_signatures()
    spread = sig.std(axis=0) + 1e-3
    k, b = sig.shape
    # per-class spectral drift across the scene: one smooth log-gain field per class and band
    coarse = max(4, round(1 / config.drift_scale) + 2)
    drift = rng.normal(0, config.drift, (k, b, coarse, coarse))
    drift = ndimage.zoom(drift, (1, 1, n / coarse, n / coarse), order=3)[..., :n, :n]
    rr, cc = np.mgrid[0:n, 0:n]
    gain = np.exp(drift[lc, :, rr, cc])  # (H, W, B)
    image = sig[lc] * gain
    # texture (as the synthetic regions): multiplicative, per parcel, building blocks
    amp = np.append(TEXTURE_AMPLITUDE, TEXTURE_AMPLITUDE[FIELDS] * 1.5)[lc] * config.texture
    tex = noise_field(rng, (n, n), rng.uniform(1.5, 4.0))
    parcel_gain = rng.normal(0, 0.12 * config.texture, parcels.max() + 1)
    blocks = np.kron(rng.normal(0, 1, (n // 2 + 1, n // 2 + 1)), np.ones((2, 2)))[:n, :n]
    field_like = (lc == FIELDS) | (lc == GRASSLAND)
    mult = 1 + amp * tex + np.where(field_like, parcel_gain[parcels], 0)
    mult = mult + np.where(lc == SETTLEMENT, 0.25 * config.texture * blocks, 0)
    mult = mult + np.where((lc == FOREST) | (lc == BARE), 0.05 * tex, 0)
    image = np.moveaxis(image * np.clip(mult, 0.2, 3.0)[..., None], -1, 0)
    haze = config.haze * np.abs(noise_field(rng, (n, n), config.drift_scale * n))
    image = image + haze[None] * np.array([1.0, 0.7, 0.5, 0.25, 0.1])[:, None, None]
    if config.blur > 0:
        image = ndimage.gaussian_filter(image, (0, config.blur, config.blur))
    image = image + config.noise * spread[:, None, None] * rng.standard_normal(image.shape)
    image = np.clip(image, 0.0, 1.0).astype(np.float32)
    inside = footprint(rng, config)
    image[:, ~inside] = np.float32(config.nodata)
    return image, np.where(inside, lc, -1)


def class_values(classes: np.ndarray, nodata: float) -> np.ndarray:
    """Class indices (-1 outside) as the float32 mask the issue's user had."""
    values = np.asarray(SCENE_SCHEME.values, dtype=np.float32)
    return np.where(classes >= 0, values[np.clip(classes, 0, None)], np.float32(nodata))


def _write(path: Path, data: np.ndarray, transform: Affine, config: SceneConfig) -> None:
    profile = {"driver": "GTiff", "width": data.shape[-1], "height": data.shape[-2],
               "count": data.shape[0], "dtype": "float32", "crs": CRS.from_string(config.crs),
               "transform": transform, "nodata": config.nodata, "compress": "deflate"}  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data.astype(np.float32))
        if data.shape[0] == len(SCENE_BANDS):
            for i, name in enumerate(SCENE_BANDS, start=1):
                dst.set_band_description(i, name)


def write_scene_dataset(
    out: str | Path, config: SceneConfig | None = None, *, overwrite: bool = False
) -> dict[str, Path]:
    """Write the scene, its reference and its quadrant regions (see the module docstring).

    Everything is written under a temporary folder beside ``out`` and renamed into place.

    Args:
        out: Output folder (must not exist or be empty unless ``overwrite``).
        config: Knobs (defaults: the committed case).
        overwrite: Replace an existing ``out``.

    Returns:
        ``{"scene", "reference", "regions", "classes"}`` paths, plus one per quadrant.

    Raises:
        FileExistsError: ``out`` is not empty and ``overwrite`` is false.
    """
    config = config or SceneConfig()
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} is not empty; choose another --out or pass --force")
    image, classes = generate_scene(config)
    mask = class_values(classes, config.nodata)[None]
    n, t, px = config.size, config.tile_size, config.pixel_size
    x0, y0 = 500000.0, 1700000.0
    tmp = out.parent / f".{out.name}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "regions").mkdir(parents=True)
    _write(tmp / "scene.tif", image, Affine(px, 0, x0, 0, -px, y0), config)
    _write(tmp / "reference.tif", mask, Affine(px, 0, x0, 0, -px, y0), config)
    SCENE_SCHEME.save(tmp / "classes.yaml")
    SCENE_SCHEME.save(tmp / "regions" / "classes.yaml")
    half = n // 2
    for q, name in enumerate(QUADRANTS):
        region = tmp / "regions" / name
        (region / "images").mkdir(parents=True)
        (region / "masks").mkdir()
        r0, c0 = (q // 2) * half, (q % 2) * half
        for r in range(r0, r0 + half - t + 1, t):
            for c in range(c0, c0 + half - t + 1, t):
                if not (classes[r : r + t, c : c + t] >= 0).any():
                    continue
                tr = Affine(px, 0, x0 + c * px, 0, -px, y0 - r * px)
                stem = f"r{r:04d}_c{c:04d}.tif"
                _write(region / "images" / stem, image[:, r : r + t, c : c + t], tr, config)
                _write(region / "masks" / stem, mask[:, r : r + t, c : c + t], tr, config)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    paths = {"scene": out / "scene.tif", "reference": out / "reference.tif",
             "regions": out / "regions", "classes": out / "classes.yaml"}  # fmt: skip
    paths.update({name: out / "regions" / name for name in QUADRANTS})
    return paths
