"""Raster reading on rasterio: windowed reads to tensors, profiles, window grids.

* :func:`read_raster` reads a raster (GeoTIFF, PNG, JPEG, anything GDAL opens) or a window
  of it as a float tensor ``C×H×W`` with its :class:`RasterProfile` (CRS, transform of the
  window, nodata, band descriptions) and a validity mask (``False`` where the raster has no
  data: nodata value, internal mask or alpha band).
* Writing lives in :mod:`landcover.geo.writer` (which imports this module, never the
  reverse): :class:`~landcover.geo.writer.RasterWriter` streams windows into a tiled GeoTIFF
  written to a temporary file and renamed into place on close (atomic; an exception leaves
  nothing; ``cog=True`` translates it with GDAL's COG driver), and
  :func:`~landcover.geo.writer.write_class_map` writes a whole class map with its colour
  table, keeping the input's CRS and transform.
* :func:`iter_windows` covers a raster with windows of a given size (and overlap).

Images without georeferencing are accepted: their profile has ``crs=None`` and outputs then
carry no CRS.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
import rasterio.windows
import torch
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.transform import Affine
from rasterio.windows import Window
from torch import Tensor

from landcover.geo.errors import GeoDataError

__all__ = [
    "RasterData",
    "RasterProfile",
    "band_validity",
    "data_bands",
    "iter_windows",
    "open_raster",
    "read_profile",
    "read_raster",
]


@dataclass(frozen=True)
class RasterProfile:
    """Georeferencing and layout of a raster (or of a window of it).

    Attributes:
        width: Columns.
        height: Rows.
        count: Bands.
        dtype: Numpy dtype name of the bands on disk.
        crs: Coordinate reference system, ``None`` for images without georeferencing.
        transform: Pixel -> CRS affine transform (identity without georeferencing).
        nodata: Nodata value, or ``None``.
        descriptions: One description (band name) per band, ``None`` where unset.
    """

    width: int
    height: int
    count: int
    dtype: str
    crs: CRS | None
    transform: Affine
    nodata: float | None
    descriptions: tuple[str | None, ...]

    @property
    def georeferenced(self) -> bool:
        """Whether the raster has a CRS."""
        return self.crs is not None

    def window(self, window: Window) -> RasterProfile:
        """Profile of a window of this raster (shifted transform, window size)."""
        transform = rasterio.windows.transform(window, self.transform)
        return replace(
            self, width=int(window.width), height=int(window.height), transform=transform
        )

    def to_json(self) -> dict[str, Any]:
        """JSON-friendly form (CRS as WKT, transform as 6 numbers)."""
        return {
            "width": self.width,
            "height": self.height,
            "count": self.count,
            "dtype": self.dtype,
            "crs": None if self.crs is None else self.crs.to_wkt(),
            "transform": list(self.transform)[:6],
            "nodata": self.nodata,
            "descriptions": list(self.descriptions),
        }


@dataclass
class RasterData:
    """A raster (window) read into memory.

    Attributes:
        image: ``(C, H, W)`` float tensor of the band values as stored (not normalised),
            NaN where the raster has no data.
        profile: Profile of exactly this window.
        valid: ``(H, W)`` bool tensor, ``False`` where the raster has no data.
    """

    image: Tensor
    profile: RasterProfile
    valid: Tensor

    @property
    def nodata_mask(self) -> Tensor:
        """``(H, W)`` bool tensor, ``True`` where the raster has no data."""
        return ~self.valid


def open_raster(path: str | Path) -> rasterio.DatasetReader:
    """Open a raster for reading, with an error naming the file when GDAL cannot."""
    path = Path(path)
    if not path.is_file():
        raise GeoDataError("file not found", path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except RasterioIOError as err:
        raise GeoDataError(
            f"not a readable raster (corrupt or unsupported format: {err}); "
            "use GeoTIFF, PNG or JPEG",
            path,
        ) from None


def _profile(src: rasterio.DatasetReader) -> RasterProfile:
    georef = src.crs is not None
    return RasterProfile(
        width=src.width,
        height=src.height,
        count=src.count,
        dtype=str(src.dtypes[0]),
        crs=src.crs if georef else None,
        # a geotransform without a CRS (world file, local grid) is kept: outputs overlay
        transform=src.transform
        if georef or src.transform != Affine.identity()
        else Affine.identity(),
        nodata=src.nodata,
        descriptions=tuple(src.descriptions),
    )


def data_bands(src: rasterio.DatasetReader, expected: int) -> list[int]:
    """Band indexes (1-based) that hold data for a model of ``expected`` bands.

    An alpha band (RGBA imagery: drone orthomosaics, QGIS exports) marks which pixels have
    data (GDAL's dataset mask uses it); it is left out when the other bands are exactly
    the ``expected`` ones. Otherwise all bands, for the caller's band-count check.
    """
    alpha = {i for i, c in zip(src.indexes, src.colorinterp) if c == ColorInterp.alpha}
    bands = [i for i in src.indexes if i not in alpha]
    return bands if alpha and len(bands) == expected else list(src.indexes)


def band_validity(
    src: rasterio.DatasetReader,
    indexes: Sequence[int],
    data: np.ndarray,
    window: Window | None = None,
) -> np.ndarray:
    """``(H, W)`` bool: ``True`` where every band of ``indexes`` has data.

    A pixel is nodata when any of the bands read is: it equals that band's declared nodata
    value (any value: ``-99999``, ``0`` of a uint16 scene, ``nan``; one per band or one
    for the dataset), an internal mask or an alpha band masks it out, or it is NaN or
    infinite (with or without a nodata tag). GDAL's dataset mask instead keeps a pixel
    when *any* band has data, which would let one band's nodata value reach the network.

    Args:
        src: The open raster.
        indexes: 1-based bands that were read into ``data``.
        data: ``(len(indexes), H, W)`` values read from ``window``.
        window: The window read (``None``: the whole raster).
    """
    valid = np.ones(data.shape[1:], dtype=bool)
    flags = src.mask_flag_enums
    if not all(MaskFlags.all_valid in flags[b - 1] for b in indexes):
        valid &= (src.read_masks(list(indexes), window=window) > 0).all(axis=0)
    if data.dtype.kind == "f":
        valid &= np.isfinite(data).all(axis=0)
    return valid


def read_profile(path: str | Path) -> RasterProfile:
    """Profile of a raster without reading its pixels."""
    with open_raster(path) as src:
        return _profile(src)


def read_raster(
    path: str | Path,
    window: Window | None = None,
    bands: Sequence[int] | None = None,
    dtype: torch.dtype = torch.float32,
) -> RasterData:
    """Read a raster, or a window of it, as a float tensor with its profile and validity.

    Args:
        path: Raster file.
        window: Pixel window to read (``rasterio.windows.Window``); ``None`` reads it all.
        bands: 1-based band indexes to read (all by default).
        dtype: Floating dtype of the returned image.

    Returns:
        The image ``(C, H, W)`` (NaN at nodata pixels), the window's profile and the
        ``(H, W)`` validity mask (:func:`band_validity`).

    Raises:
        GeoDataError: The file is missing, unreadable, or the window/bands are out of range.
    """
    with open_raster(path) as src:
        indexes = list(bands) if bands is not None else list(range(1, src.count + 1))
        if any(not 1 <= b <= src.count for b in indexes):
            raise GeoDataError(f"bands {indexes} out of range 1..{src.count}", path)
        if window is not None:
            full = Window(0, 0, src.width, src.height)
            if (
                window.col_off < 0
                or window.row_off < 0
                or window.col_off + window.width > full.width
                or window.row_off + window.height > full.height
            ):
                raise GeoDataError(
                    f"window {window} outside the raster ({src.width}×{src.height})", path
                )
        try:
            data = src.read(indexes, window=window)
            valid = band_validity(src, indexes, data, window)
        except RasterioIOError as err:
            raise GeoDataError(f"cannot read pixels (corrupt file?): {err}", path) from None
        profile = _profile(src)
        profile = replace(
            profile,
            count=len(indexes),
            descriptions=tuple(profile.descriptions[b - 1] for b in indexes),
        )
        if window is not None:
            profile = profile.window(window)
    image = torch.from_numpy(data.astype(np.float64 if dtype == torch.float64 else np.float32))
    image[:, torch.from_numpy(~valid)] = float("nan")  # a nodata value is never a value
    return RasterData(image=image.to(dtype), profile=profile, valid=torch.from_numpy(valid))


def iter_windows(
    width: int, height: int, size: int | tuple[int, int], overlap: int = 0
) -> Iterator[Window]:
    """Windows of ``size`` (rows, cols) covering a ``width × height`` raster, row-major.

    Windows step by ``size - overlap``; the last row and column of windows are shifted back
    to end at the raster's edge (so every window has the full size when the raster is at
    least that large, otherwise it is clipped to the raster).
    """
    rows, cols = (size, size) if isinstance(size, int) else size
    if rows <= overlap or cols <= overlap or overlap < 0:
        raise ValueError(f"window size {size} must exceed overlap {overlap} >= 0")
    rows, cols = min(rows, height), min(cols, width)

    def starts(total: int, length: int, step: int) -> list[int]:
        out = list(range(0, max(total - length, 0) + 1, step))
        if out[-1] + length < total:
            out.append(total - length)
        return out

    for r in starts(height, rows, rows - overlap):
        for c in starts(width, cols, cols - overlap):
            yield Window(c, r, cols, rows)
