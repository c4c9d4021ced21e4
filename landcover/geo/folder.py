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
(see :mod:`landcover.geo.classes`); palette (mode "P") PNG masks are read through their
palette, so one region may mix RGB and palette masks. A mask's declared nodata (nodata
value, internal mask) is unlabeled unless the class file lists that value. Image pixels
without data (:func:`~landcover.geo.raster.band_validity`) are unlabeled too.
:func:`find_problems` lists every bad file of a dataset in one pass (what ``landcover data
inspect`` reports). Images without georeferencing are accepted. Every bad input raises
:class:`~landcover.geo.errors.GeoDataError` naming the file: no region folders, an empty
``images/``, an image without a mask (or a mask without an image), image and mask of
different sizes, an unreadable file, a mask with values not in the class file, regions
with different band counts or class files.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.enums import MaskFlags

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


def _files(folder: Path, problems: list[GeoDataError] | None = None) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in SUFFIXES and not p.name.startswith("."):
            if p.stem in out:
                err = GeoDataError(
                    f"two files share the stem {p.stem!r} ({out[p.stem].name}, {p.name}); "
                    "pairs are matched by stem, so keep one",
                    p,
                )
                if problems is None:
                    raise err
                problems.append(err)
                continue
            out[p.stem] = p
    return out


def _pairs(
    folder: Path, problems: list[GeoDataError] | None = None
) -> list[tuple[str, Path, Path]]:
    """``(stem, image, mask)`` of a region folder; structural problems raise or are collected.

    With ``problems`` given, every problem is appended to it (and the bad files skipped)
    instead of raising at the first one.
    """

    def report(err: GeoDataError) -> None:
        if problems is None:
            raise err
        problems.append(err)

    img_dir, mask_dir = folder / "images", folder / "masks"
    for d in (img_dir, mask_dir):
        if not d.is_dir():
            report(
                GeoDataError(
                    f"missing the {d.name}/ sub-folder; a region folder holds images/ and masks/",
                    folder,
                )
            )
            return []
    images, masks = _files(img_dir, problems), _files(mask_dir, problems)
    if not images:
        report(GeoDataError(f"no images ({', '.join(SUFFIXES)}) in the folder", img_dir))
    for stem, p in images.items():
        if stem not in masks:
            report(GeoDataError(
                f"image has no mask: expected masks/{stem}.tif|.png|.jpg (pairs match by stem)", p
            ))  # fmt: skip
    for stem, p in masks.items():
        if stem not in images:
            report(GeoDataError(f"mask has no image: expected images/{stem}.*", p))
    return [(stem, p, masks[stem]) for stem, p in images.items() if stem in masks]


def decode_palette(
    scheme: ClassScheme,
    indices: np.ndarray,
    palette: Mapping[int, Sequence[int]],
    source: str | Path | None = None,
) -> np.ndarray:
    """Class indices of a palette (mode "P") mask, read through its palette.

    Args:
        scheme: The class scheme.
        indices: ``(H, W)`` or ``(1, H, W)`` palette indices.
        palette: Palette index -> RGB(A) colour (rasterio's ``colormap(1)``).
        source: File the mask came from, named in errors.

    Colour-coded schemes look up each used palette entry's colour; value-coded ones
    take the palette indices as the values (the usual convention of indexed masks).
    """
    if indices.ndim == 3 and indices.shape[0] == 1:
        indices = indices[0]
    if scheme.encoding == "value":
        return scheme.encode(indices, source)
    hist = np.bincount(indices.ravel(), minlength=256)
    used = np.flatnonzero(hist)
    missing = [int(i) for i in used if int(i) not in palette]
    if missing:
        raise GeoDataError(
            f"palette mask uses indices {missing[:10]} that its palette does not define; "
            "save the mask as RGB or fix its palette",
            source,
        )
    colours = np.array([list(palette[int(i)])[:3] for i in used], dtype=np.uint8)
    # (3, 1, n) -> (n,); errors count each colour's pixels, not its palette entries
    classes = scheme.encode(colours.T[:, None, :], source, weights=hist[used][None, :])[0]
    lut = np.full(max(256, int(used.max()) + 1), scheme.ignore_index, dtype=np.int64)
    lut[used] = classes
    return lut[indices]


def _claims(scheme: ClassScheme, nodata: float) -> bool:
    """Whether the class file gives the mask's nodata value a meaning (a class or ignore)."""
    if not np.isfinite(nodata) or nodata != int(nodata):
        return False
    if scheme.encoding == "value":
        return int(nodata) in (*scheme.raw_values(), *scheme.ignore_values)
    grey = (int(nodata),) * 3
    return grey in scheme.colors or grey in scheme.ignore_values


def mask_nodata(src: rasterio.DatasetReader, scheme: ClassScheme) -> np.ndarray | None:
    """``(H, W)`` bool, ``True`` where a mask file declares no data, or ``None`` if nowhere.

    A mask's declared nodata (a nodata value such as ``-99999`` or ``0``, an internal mask,
    an alpha band) marks unlabeled pixels, which read as the ignore index, unless the class
    file names that value as a class (or an ignore value): the class file says otherwise.
    """
    if all(MaskFlags.all_valid in flags for flags in src.mask_flag_enums):
        return None
    if src.nodata is not None and _claims(scheme, float(src.nodata)):
        return None
    missing = src.dataset_mask() == 0
    return missing if missing.any() else None


def read_mask(path: str | Path, scheme: ClassScheme) -> np.ndarray:
    """A mask file as ``(H, W)`` class indices (palette masks through their palette).

    Pixels the file declares nodata (:func:`mask_nodata`) are the ignore index.

    Raises:
        GeoDataError: Unreadable file, wrong band count for the encoding.
        MaskValueError: Values or colours that the class file does not define.
    """
    with open_raster(path) as src:
        raw = src.read()
        missing = mask_nodata(src, scheme)
        palette = None
        if src.count == 1:
            try:
                palette = src.colormap(1)
            except ValueError:  # no colour table
                palette = None
    if missing is not None:
        if missing.all():
            return np.full(raw.shape[1:], scheme.ignore_index, dtype=np.int64)
        # stand-in: a labeled pixel's own value, so that decoding sees only known values
        raw = raw.copy()
        raw[:, missing] = raw[:, ~missing][:, :1]
    if palette and scheme.encoding == "color":
        classes = decode_palette(scheme, raw, palette, source=path)
    else:
        classes = scheme.encode(raw, source=path)
    if missing is not None:
        classes[missing] = scheme.ignore_index
    return classes


def _tile_loader(image: Path, mask: Path, scheme: ClassScheme) -> Callable[[], Sample]:
    def load() -> Sample:
        img = read_raster(image)
        encoded = read_mask(mask, scheme)
        if encoded.shape != tuple(img.image.shape[-2:]):
            raise GeoDataError(
                f"mask is {encoded.shape[-1]}×{encoded.shape[-2]} px but its image {image.name} "
                f"is {img.image.shape[-1]}×{img.image.shape[-2]}; masks must match their images",
                mask,
            )
        classes = torch.from_numpy(encoded)
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
    pairs = _pairs(folder)
    if scheme is None:
        class_file = find_class_file(folder)
        if class_file is None:
            raise GeoDataError(
                "no class file: put classes.yaml or classes.json (class names with values or "
                "colours) in the region folder or its parent",
                folder,
            )
        scheme = ClassScheme.from_file(class_file)
    images = {stem: image for stem, image, _ in pairs}
    tiles = [TileRef(stem, _tile_loader(image, mask, scheme)) for stem, image, mask in pairs]
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


def region_folders(root: str | Path) -> list[Path]:
    """The region folders of a dataset root (``root`` itself when it holds ``images/``)."""
    root = Path(root)
    if not root.is_dir():
        raise GeoDataError("dataset folder not found", root)
    if (root / "images").is_dir():
        return [root]
    folders = [p for p in sorted(root.iterdir()) if p.is_dir() and (p / "images").exists()]
    if not folders:
        raise GeoDataError(
            "no region folders: expected sub-folders each holding images/ and masks/", root
        )
    return folders


def find_problems(
    root: str | Path, scheme: ClassScheme | None = None, *, classes: str | Path | None = None
) -> list[GeoDataError]:
    """Every bad file of a folder dataset, found in one pass (nothing raised).

    Checks what :func:`read_regions` checks (class files, unmatched pairs, unreadable
    rasters, sizes, mask values, band counts) but keeps going after a problem, so a user
    fixes all of them at once.
    """
    problems: list[GeoDataError] = []
    try:
        folders = region_folders(root)
        if classes is not None:
            scheme = ClassScheme.from_file(classes)
    except GeoDataError as err:
        return [err]
    bands: int | None = None
    names: tuple[str, ...] | None = None
    for folder in folders:
        region_scheme = scheme
        if region_scheme is None:
            class_file = find_class_file(folder)
            if class_file is None:
                problems.append(GeoDataError("no class file (classes.yaml or .json)", folder))
            else:
                try:
                    region_scheme = ClassScheme.from_file(class_file)
                except GeoDataError as err:
                    if not any(str(err) == str(p) for p in problems):
                        problems.append(err)
        if region_scheme is not None:
            if names is not None and region_scheme.names != names:
                problems.append(GeoDataError(
                    f"class names {list(region_scheme.names)} differ from another region's "
                    f"{list(names)}; all regions need the same classes", folder,
                ))  # fmt: skip
            names = names or region_scheme.names
        for _, image, mask in _pairs(folder, problems):
            try:
                img = read_raster(image)
            except GeoDataError as err:
                problems.append(err)
                continue
            if bands is not None and img.image.shape[0] != bands:
                problems.append(GeoDataError(
                    f"image has {img.image.shape[0]} bands, other images {bands}; all images "
                    "need the same bands", image,
                ))  # fmt: skip
            bands = bands or int(img.image.shape[0])
            if region_scheme is None:
                continue
            try:
                _tile_loader(image, mask, region_scheme)()
            except GeoDataError as err:
                problems.append(err)
    return problems


def read_regions(
    root: str | Path,
    scheme: ClassScheme | None = None,
    *,
    validate: bool = True,
    cache: bool = True,
    classes: str | Path | None = None,
) -> list[Region]:
    """Read every region folder under ``root`` (or ``root`` itself if it is a region folder).

    All regions must share one class scheme and band count.

    Args:
        root: Dataset folder.
        scheme: Class scheme for every region (default: each region's class file).
        validate: Open every tile now (see :func:`read_region_folder`).
        cache: Keep loaded tiles in memory.
        classes: A class file to use instead of the folders' own (for read-only datasets or
            ones shipped with a class file in another format, e.g. dubai-aerial).
    """
    folders = region_folders(root)
    if classes is not None:
        scheme = ClassScheme.from_file(classes)
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
