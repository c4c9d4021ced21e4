"""Users' own regions: a folder per region with ``images/``, ``masks/`` and a class file.

Layout::

    ROOT/                          (or a single region folder given directly)
      classes.yaml                 (or classes.json; here, in each region, or both)
      region_a/
        images/ tile1.tif  tile2.png  ...   (GeoTIFF, PNG or JPEG)
        masks/  tile1.tif  tile2.png  ...   (paired with the images by file stem)
        classes.yaml                        (optional when ROOT has one)
      region_b/ ...

Masks are value-coded (one band of integers) or colour-coded (RGB) as the class file says
(see :mod:`landcover.geo.classes`). Images without georeferencing are accepted. Every bad
input raises :class:`~landcover.geo.errors.GeoDataError` naming the file: no region folders,
an empty ``images/``, an image without a mask (or a mask without an image), image and mask
of different sizes, an unreadable file, a mask with values not in the class file, regions
with different band counts or class files.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from landcover.geo.classes import ClassScheme
from landcover.geo.errors import GeoDataError
from landcover.geo.raster import open_raster, read_raster
from landcover.geo.region import Region, Sample, TileRef

#: File suffixes read as images and masks.
SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")
#: Class file names, in order of preference.
CLASS_FILES = ("classes.yaml", "classes.yml", "classes.json")


def find_class_file(folder: Path) -> Path | None:
    """The class file in ``folder`` or, failing that, in its parent."""
    for where in (folder, folder.parent):
        for name in CLASS_FILES:
            if (where / name).is_file():
                return where / name
    return None


def _files(folder: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in SUFFIXES and not p.name.startswith("."):
            if p.stem in out:
                raise GeoDataError(
                    f"two files share the stem {p.stem!r} ({out[p.stem].name}, {p.name}); "
                    "pairs are matched by stem, so keep one",
                    p,
                )
            out[p.stem] = p
    return out


def _tile_loader(image: Path, mask: Path, scheme: ClassScheme) -> Callable[[], Sample]:
    def load() -> Sample:
        img = read_raster(image)
        with open_raster(mask) as src:
            raw = src.read()
        if raw.shape[-2:] != tuple(img.image.shape[-2:]):
            raise GeoDataError(
                f"mask is {raw.shape[-1]}×{raw.shape[-2]} px but its image {image.name} is "
                f"{img.image.shape[-1]}×{img.image.shape[-2]}; masks must match their images",
                mask,
            )
        classes = torch.from_numpy(scheme.encode(raw, source=mask))
        classes[~img.valid] = scheme.ignore_index
        return {"image": img.image, "mask": classes, "valid": img.valid}

    return load


def read_region_folder(
    path: str | Path,
    scheme: ClassScheme | None = None,
    *,
    validate: bool = True,
    cache: bool = True,
) -> Region:
    """Read one region folder.

    Args:
        path: Folder with ``images/`` and ``masks/``.
        scheme: Class scheme; by default read from the class file of the folder or its parent.
        validate: Open every pair now (sizes, band counts, mask values) so that bad inputs fail
            here rather than in the middle of training.
        cache: Keep loaded tiles in memory.

    Returns:
        The region, named after the folder.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise GeoDataError("region folder not found", folder)
    img_dir, mask_dir = folder / "images", folder / "masks"
    for d in (img_dir, mask_dir):
        if not d.is_dir():
            raise GeoDataError(
                f"missing the {d.name}/ sub-folder; a region folder holds images/ and masks/",
                folder,
            )
    if scheme is None:
        class_file = find_class_file(folder)
        if class_file is None:
            raise GeoDataError(
                "no class file: put classes.yaml or classes.json (class names with values or "
                "colours) in the region folder or its parent",
                folder,
            )
        scheme = ClassScheme.from_file(class_file)
    images, masks = _files(img_dir), _files(mask_dir)
    if not images:
        raise GeoDataError(f"no images ({', '.join(SUFFIXES)}) in the folder", img_dir)
    for stem, p in images.items():
        if stem not in masks:
            raise GeoDataError(
                f"image has no mask: expected masks/{stem}.tif|.png|.jpg (pairs match by stem)", p
            )
    for stem, p in masks.items():
        if stem not in images:
            raise GeoDataError(f"mask has no image: expected images/{stem}.*", p)
    tiles = [TileRef(stem, _tile_loader(images[stem], masks[stem], scheme)) for stem in images]
    first = read_raster(images[next(iter(images))])
    bands = tuple(d or f"band{i + 1}" for i, d in enumerate(first.profile.descriptions))
    region = Region(
        folder.name, scheme, bands, tiles, crs=first.profile.crs, meta={"path": str(folder)},
        cache=cache,
    )  # fmt: skip
    if validate:
        for i, stem in enumerate(images):
            sample = region[i]
            if sample["image"].shape[0] != len(bands):
                raise GeoDataError(
                    f"image has {sample['image'].shape[0]} bands but the region's first image "
                    f"has {len(bands)}; all images of a region need the same bands",
                    images[stem],
                )
    return region


def read_regions(
    root: str | Path,
    scheme: ClassScheme | None = None,
    *,
    validate: bool = True,
    cache: bool = True,
) -> list[Region]:
    """Read every region folder under ``root`` (or ``root`` itself if it is a region folder).

    All regions must share one class scheme and band count.
    """
    root = Path(root)
    if not root.is_dir():
        raise GeoDataError("dataset folder not found", root)
    if (root / "images").is_dir():
        return [read_region_folder(root, scheme, validate=validate, cache=cache)]
    folders = [p for p in sorted(root.iterdir()) if p.is_dir() and (p / "images").exists()]
    if not folders:
        raise GeoDataError(
            "no region folders: expected sub-folders each holding images/ and masks/", root
        )
    regions = [read_region_folder(f, scheme, validate=validate, cache=cache) for f in folders]
    first = regions[0]
    for r in regions[1:]:
        if r.scheme.names != first.scheme.names:
            raise GeoDataError(
                f"class file differs from region {first.name!r} ({list(first.scheme.names)} vs "
                f"{list(r.scheme.names)}); all regions need the same classes",
                r.meta["path"],
            )
        if len(r.band_names) != len(first.band_names):
            raise GeoDataError(
                f"{len(r.band_names)} bands but region {first.name!r} has "
                f"{len(first.band_names)}; all regions need the same bands",
                r.meta["path"],
            )
    return regions
