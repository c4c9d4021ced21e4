"""DeepGlobe Land Cover reader, with regions built by clustering images on appearance.

Demir et al., "DeepGlobe 2018: A Challenge to Parse the Earth through Satellite Images",
CVPR-W 2018. Two on-disk layouts are read (see :func:`find_pairs`):

* as the challenge ships it (the ``train/`` folder, or its content directly)::

    ROOT/[train/]{id}_sat.jpg    2448×2448 RGB, 50 cm
    ROOT/[train/]{id}_mask.png   RGB colour-coded classes

* as torchgeo's ``DeepGlobeLandCover`` lays it out (``ROOT`` may also be ``data/``)::

    ROOT/data/training_data/images/{id}_sat.jpg   ROOT/data/training_data/masks/{id}_mask.png
    ROOT/data/test_data/images/{id}_sat.jpg       ROOT/data/test_data/masks/{id}_mask.png

A folder that looks like DeepGlobe (``*_sat.*`` files, a ``training_data`` folder) but
matches neither layout gets an error saying which files are missing or misnamed, rather
than being read as something else.

Colours: Urban (0,255,255), Agriculture (255,255,0), Rangeland (255,0,255), Forest (0,255,0),
Water (0,0,255), Barren (255,255,255) and Unknown (0,0,0), which becomes the ignore index.
The masks are not pure 0/255, so each channel is thresholded at 128 before decoding.

The images carry no location, so regions are formed by one of:

* ``"cluster"`` (the "clustered split", where regions differ in appearance, as in Rußwurm et
  al., CVPR-W 2020): each image is described by a 64×64 thumbnail's per-channel mean, standard
  deviation and 8-bin histogram (30 features, standardised); k-means (scikit-learn,
  ``n_init=10``, ``random_state=seed``) groups the images into ``n_regions`` clusters;
* ``"random"``: a seeded random assignment into ``n_regions`` groups of equal size.

Region names are ``cluster_XX`` / ``random_XX``; ``split`` selects regions by seeded
fractions or explicit lists of region names.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from rasterio.enums import Resampling
from rasterio.windows import Window

from landcover.geo.classes import ClassScheme
from landcover.geo.errors import GeoDataError
from landcover.geo.raster import open_raster
from landcover.geo.region import Region, Sample, TileRef

DEEPGLOBE_SCHEME = ClassScheme(
    names=("urban", "agriculture", "rangeland", "forest", "water", "barren"),
    colors=((0, 255, 255), (255, 255, 0), (255, 0, 255), (0, 255, 0), (0, 0, 255),
            (255, 255, 255)),
    encoding="color",
    ignore_value=(0, 0, 0),
    threshold=128,
)  # fmt: skip
BANDS = ("red", "green", "blue")


#: Sub-folders of torchgeo's layout, relative to ``ROOT/data``.
TORCHGEO_SPLITS = ("training_data", "test_data")
LAYOUTS = (
    "the challenge's ROOT/[train/]{id}_sat.jpg beside {id}_mask.png, or torchgeo's "
    "ROOT/data/{training_data,test_data}/images/{id}_sat.jpg with masks/{id}_mask.png"
)


def looks_like_deepglobe(root: str | Path) -> bool:
    """Whether a folder seems meant as DeepGlobe (``*_sat.*`` files or torchgeo folders)."""
    root = Path(root)
    if not root.is_dir():
        return False
    for where in (root, root / "train", root / "data", root / "training_data"):
        if where.is_dir() and any(where.glob("*_sat.*")):
            return True
    for base in (root, root / "data"):
        for split in TORCHGEO_SPLITS:
            if (base / split).is_dir():
                return True
    return False


def _torchgeo_pairs(base: Path) -> list[tuple[Path, Path]] | None:
    splits = [base / s for s in TORCHGEO_SPLITS if (base / s).is_dir()]
    if not splits:
        return None
    pairs: list[tuple[Path, Path]] = []
    for split in splits:
        images, masks = split / "images", split / "masks"
        for d in (images, masks):
            if not d.is_dir():
                raise GeoDataError(
                    f"looks like torchgeo's DeepGlobe layout but has no {d.name}/ folder; "
                    f"expected {LAYOUTS}",
                    split,
                )
        sats = sorted(images.glob("*_sat.jpg"))
        if not sats:
            raise GeoDataError(
                f"no {{id}}_sat.jpg images in the folder; expected {LAYOUTS}", images
            )
        for sat in sats:
            mask = masks / sat.name.replace("_sat.jpg", "_mask.png")
            if not mask.is_file():
                raise GeoDataError(f"DeepGlobe image has no mask: expected {mask}", sat)
            pairs.append((sat, mask))
        for m in sorted(masks.glob("*_mask.png")):
            if not (images / m.name.replace("_mask.png", "_sat.jpg")).is_file():
                raise GeoDataError("DeepGlobe mask has no image {id}_sat.jpg in images/", m)
    return pairs


def find_pairs(root: str | Path) -> list[tuple[Path, Path]]:
    """``(image, mask)`` files of a DeepGlobe folder in either layout (module docstring).

    Raises:
        GeoDataError: The folder matches neither layout; the message says what is missing.
    """
    root = Path(root)
    if not root.is_dir():
        raise GeoDataError("DeepGlobe folder not found", root)
    for base in (root / "data", root):
        pairs = _torchgeo_pairs(base)
        if pairs is not None:
            return pairs
    folder = root / "train" if (root / "train").is_dir() and not any(root.glob("*_sat.*")) else root
    sats = sorted(folder.glob("*_sat.jpg"))
    if not sats:
        others = sorted(p.name for p in folder.glob("*_sat.*"))[:3]
        hint = f" (found {others}: images must be JPEG named {{id}}_sat.jpg)" if others else ""
        raise GeoDataError(f"no DeepGlobe images {{id}}_sat.jpg{hint}; expected {LAYOUTS}", folder)
    pairs = []
    for s in sats:
        mask = s.with_name(s.name.replace("_sat.jpg", "_mask.png"))
        if not mask.is_file():
            raise GeoDataError(f"image has no mask: expected {mask.name} beside it", s)
        pairs.append((s, mask))
    for m in folder.glob("*_mask.png"):
        if not m.with_name(m.name.replace("_mask.png", "_sat.jpg")).is_file():
            raise GeoDataError("mask has no image: expected {id}_sat.jpg beside it", m)
    return pairs


def appearance_features(path: Path, size: int = 64) -> np.ndarray:
    """Per-channel mean, std and 8-bin histogram of a ``size``² thumbnail (30 values)."""
    with open_raster(path) as ds:
        thumb = ds.read([1, 2, 3], out_shape=(3, size, size), resampling=Resampling.average)
    x = thumb.reshape(3, -1).astype(np.float64) / 255.0
    hist = [np.histogram(c, bins=8, range=(0, 1))[0] / c.size for c in x]
    return np.concatenate([x.mean(1), x.std(1), *hist])


def group_images(
    paths: Sequence[Path], n_regions: int, method: Literal["cluster", "random"], seed: int
) -> np.ndarray:
    """Region id of every image (see the module docstring)."""
    n = len(paths)
    if not 1 <= n_regions <= n:
        raise ValueError(f"n_regions must be in 1..{n} (the number of images); got {n_regions}")
    if method == "random":
        rng = np.random.default_rng(seed)
        return np.arange(n)[rng.permutation(n)] % n_regions
    if method != "cluster":
        raise KeyError(f"method must be 'cluster' or 'random'; got {method!r}")
    from sklearn.cluster import KMeans

    feats = np.stack([appearance_features(p) for p in paths])
    feats = (feats - feats.mean(0)) / (feats.std(0) + 1e-9)
    return KMeans(n_clusters=n_regions, n_init=10, random_state=seed).fit_predict(feats)


class DeepGlobe:
    """DeepGlobe Land Cover regions.

    Args:
        root: Folder with ``{id}_sat.jpg`` and ``{id}_mask.png`` (or its ``train/`` sub-folder).
        method: ``"cluster"`` (appearance clusters) or ``"random"``.
        n_regions: Number of regions; default one per 16 images (at least 2).
        patch_size: Cut images into ``patch_size`` tiles (a grid; the remainder is dropped).
        split: ``"train"``, ``"val"``, ``"test"`` or ``"all"``.
        test_regions: Region names held out for testing; ``None`` draws ``test_fraction``.
        val_regions: Region names for validation; ``None`` draws ``val_fraction`` of the rest.
        test_fraction: Share of regions for testing when not listed.
        val_fraction: Share of regions for validation when not listed.
        seed: Seed of the clustering / random grouping and of the split draws.
        cache: Keep loaded tiles in memory.
    """

    SCHEME = DEEPGLOBE_SCHEME
    BANDS = BANDS

    def __init__(
        self,
        root: str | Path,
        *,
        method: Literal["cluster", "random"] = "cluster",
        n_regions: int | None = None,
        patch_size: int | None = None,
        split: Literal["train", "val", "test", "all"] = "all",
        test_regions: Sequence[str] | None = None,
        val_regions: Sequence[str] | None = None,
        test_fraction: float = 0.2,
        val_fraction: float = 0.1,
        seed: int = 0,
        cache: bool = False,
    ) -> None:
        root = Path(root)
        pairs = find_pairs(root)
        sats = [sat for sat, _ in pairs]
        self.masks = {sat: mask for sat, mask in pairs}
        if split not in ("train", "val", "test", "all"):
            raise KeyError(f"split must be train, val, test or all; got {split!r}")
        self.root = root
        self.patch_size = patch_size
        self.cache = cache
        k = n_regions if n_regions is not None else max(2, len(sats) // 16)
        groups = group_images(sats, k, method, seed)
        prefix = "cluster" if method == "cluster" else "random"
        names = [f"{prefix}_{g:02d}" for g in range(k)]
        rng = np.random.default_rng(seed + 1)
        order = [names[i] for i in rng.permutation(k)]
        test = list(test_regions) if test_regions is not None else order[: round(test_fraction * k)]
        rest = [n for n in order if n not in test]
        val = list(val_regions) if val_regions is not None else rest[: round(val_fraction * k)]
        unknown = [n for n in [*test, *val] if n not in names]
        if unknown:
            raise KeyError(f"unknown regions {unknown}; regions are {names}")
        train = [n for n in names if n not in test and n not in val]
        self.splits = {"train": train, "val": sorted(val), "test": sorted(test), "all": names}
        self.assignment = {s.name.replace("_sat.jpg", ""): names[g] for s, g in zip(sats, groups)}
        self.regions = [
            self._region(name, [s for s, g in zip(sats, groups) if names[g] == name])
            for name in self.splits[split]
        ]

    def _loader(self, sat: Path, window: Window | None) -> Callable[[], Sample]:
        mask_path = self.masks[sat]

        def load() -> Sample:
            with open_raster(sat) as ds:
                image = ds.read([1, 2, 3], window=window).astype(np.float32)
            with open_raster(mask_path) as ds:
                raw = ds.read([1, 2, 3], window=window)
            if raw.shape != image.shape:
                raise GeoDataError(
                    f"mask {raw.shape[2]}×{raw.shape[1]} does not match its image "
                    f"{image.shape[2]}×{image.shape[1]}",
                    mask_path,
                )
            mask = DEEPGLOBE_SCHEME.encode(raw, source=mask_path)
            return {"image": torch.from_numpy(image), "mask": torch.from_numpy(mask)}

        return load

    def _region(self, name: str, sats: Sequence[Path]) -> Region:
        tiles: list[TileRef] = []
        for sat in sats:
            stem = sat.name.replace("_sat.jpg", "")
            if self.patch_size is None:
                tiles.append(TileRef(stem, self._loader(sat, None)))
                continue
            with open_raster(sat) as ds:
                h, w = ds.height, ds.width
            ps = self.patch_size
            if ps > min(h, w):
                raise ValueError(f"patch_size {ps} exceeds the {h}×{w} image {sat.name}")
            grid = [(r, c) for r in range(0, h - ps + 1, ps) for c in range(0, w - ps + 1, ps)]
            for i, (r, c) in enumerate(grid):
                tiles.append(TileRef(f"{stem}_{i}", self._loader(sat, Window(c, r, ps, ps))))
        return Region(
            name, DEEPGLOBE_SCHEME, BANDS, tiles, crs=None,
            meta={"dataset": "deepglobe", "images": [s.name for s in sats]}, cache=self.cache,
        )  # fmt: skip
