"""Streaming GeoTIFF writers: window by window, atomic, optionally Cloud-Optimized.

:class:`RasterWriter` writes windows into a tiled GeoTIFF under a temporary name and renames
it into place on :meth:`RasterWriter.close`; an exception inside its ``with`` block leaves
no output. With ``cog=True`` the finished file is translated to a Cloud-Optimized GeoTIFF by
GDAL's COG driver. Peak memory is one window plus GDAL's block cache, whatever the raster
size. :func:`write_class_map` writes a whole class map (uint8, colour table, nodata where the
input had none) keeping the input's CRS and transform. Also importable from
:mod:`landcover.geo.raster`.

Colour tables: a TIFF palette has one entry per possible pixel value, ``2 ** BitsPerSample``
(TIFF 6.0, ColorMap), and GDAL reads exactly that many (GTiff driver: ``1 << nBitsPerSample``
entries, whatever was written). QGIS builds the paletted renderer and its legend of a raster
without a ``.qml`` from every entry of that table (``QgsGdalProviderBase::colorTable``, one
class per entry, QGIS 3.22), so a plain 8-bit class map lists 256 values in QGIS' legend.
:func:`class_map_writer` therefore packs the map into the fewest bits of 1, 2 or 4 that hold
every class value and the nodata value (``NBITS``, kept by the COG driver): values 1..3 with
nodata 0 make a 2-bit map whose table, and QGIS' legend, has 4 entries: nodata and the 3
classes; values 1..7 with nodata 0 a 4-bit map (16 entries). Only TIFF's baseline palette
depths are used (Pillow, for one, cannot open a 3-bit TIFF). With nodata 255 (the default)
the map needs all 8 bits and the table all 256 entries.
"""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.errors import NotGeoreferencedWarning
from rasterio.transform import Affine
from rasterio.windows import Window
from torch import Tensor

from landcover.geo.classes import ClassScheme
from landcover.geo.raster import RasterProfile

__all__ = ["RasterWriter", "class_map_bits", "class_map_writer", "write_class_map"]


class RasterWriter:
    """Write a raster window by window; the file appears atomically on :meth:`close`.

    Use as a context manager; an exception inside the ``with`` block removes the temporary
    file and leaves no output::

        with RasterWriter(out, profile, count=1, dtype="uint8", nodata=255) as w:
            for win in iter_windows(profile.width, profile.height, 512):
                w.write(block, win)
    """

    def __init__(
        self,
        path: str | Path,
        profile: RasterProfile,
        *,
        count: int = 1,
        dtype: str = "uint8",
        nodata: float | None = None,
        colormap: Mapping[int, tuple[int, ...]] | None = None,
        descriptions: Sequence[str | None] | None = None,
        cog: bool = False,
        block_size: int = 256,
        compress: str | None = "deflate",
        tags: Mapping[str, str] | None = None,
        nbits: int | None = None,
    ) -> None:
        """Open the temporary output.

        Args:
            path: Final output path.
            profile: Size and georeferencing of the output (CRS/transform are copied).
            count: Bands to write.
            dtype: Numpy dtype name of the output bands.
            nodata: Nodata value written into the file.
            colormap: Colour table of band 1 (value -> RGBA), for uint8 class maps.
            descriptions: Band descriptions.
            cog: Translate to a Cloud-Optimized GeoTIFF (with overviews) on close.
            block_size: Internal tile size (multiple of 16).
            compress: GDAL compression of a plain GeoTIFF (``None``: none). A COG is
                always DEFLATE, and its temporary file is written uncompressed.
            tags: GDAL metadata items of band 1 (stored inside the GeoTIFF).
            nbits: Bits per pixel of a uint8 raster, 1..7 (GDAL's ``NBITS``; a colour table
                then has ``2 ** nbits`` entries); values that do not fit are refused on
                :meth:`write`. ``None``: the dtype's bits.
        """
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.cog = cog
        self.tmp = self.path.with_name(
            f".{self.path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp.tif"
        )
        tiled = profile.width >= block_size and profile.height >= block_size
        creation: dict[str, Any] = {
            "driver": "GTiff",
            "width": profile.width,
            "height": profile.height,
            "count": count,
            "dtype": dtype,
            "nodata": nodata,
            "tiled": tiled,
            "BIGTIFF": "IF_SAFER",
        }
        if compress and not cog:
            # a COG is compressed by GDAL's COG driver on close, which re-encodes every
            # tile: compressing the temporary file too cost 1.5x the time of the whole
            # write for the same bytes (a 16384² class map: 77 s against 50 s, identical files)
            creation["compress"] = compress
        if tiled:
            creation.update(blockxsize=block_size, blockysize=block_size)
        if nbits is not None:
            if dtype != "uint8" or not 1 <= nbits <= 7:
                raise ValueError(f"nbits={nbits} needs a uint8 raster and 1..7 bits")
            creation["nbits"] = nbits
        self.max_value = None if nbits is None else 2**nbits - 1
        if profile.crs is not None:
            creation.update(crs=profile.crs, transform=profile.transform)
        elif profile.transform != Affine.identity():  # a geotransform without a CRS
            creation.update(transform=profile.transform)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            self._dst = rasterio.open(self.tmp, "w", **creation)
        if colormap is not None:
            self._dst.write_colormap(1, dict(colormap))
        if tags:
            self._dst.update_tags(1, **dict(tags))
        if descriptions is not None:
            for i, d in enumerate(descriptions, start=1):
                if d:
                    self._dst.set_band_description(i, d)
        self.profile = profile
        self.closed = False

    def write(self, array: np.ndarray | Tensor, window: Window) -> None:
        """Write ``(C, h, w)`` or ``(h, w)`` values into ``window``."""
        if isinstance(array, Tensor):
            array = array.detach().cpu().numpy()
        if array.ndim == 2:
            array = array[None]
        if array.shape[1:] != (int(window.height), int(window.width)):
            raise ValueError(f"array {array.shape[1:]} does not match window {window}")
        if self.max_value is not None and array.size and int(array.max()) > self.max_value:
            # GDAL would silently keep the low bits only
            raise ValueError(f"value {int(array.max())} does not fit the raster's "
                             f"{self.max_value.bit_length()} bits per pixel")  # fmt: skip
        self._dst.write(array.astype(self._dst.dtypes[0], copy=False), window=window)

    def close(self) -> Path:
        """Finish the file and move it into place (as a COG when asked)."""
        if self.closed:
            return self.path
        self._dst.close()
        self.closed = True
        try:
            if self.cog:
                cog_tmp = self.tmp.with_suffix(".cog.tif")
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", NotGeoreferencedWarning)
                    rasterio.shutil.copy(
                        self.tmp, cog_tmp, driver="COG", COMPRESS="DEFLATE",
                        BLOCKSIZE=512, OVERVIEW_RESAMPLING="NEAREST",
                    )  # fmt: skip
                self.tmp.unlink()
                os.replace(cog_tmp, self.path)
            else:
                os.replace(self.tmp, self.path)
        finally:
            self.abort()
        return self.path

    def abort(self) -> None:
        """Drop the temporary file(s) without producing an output."""
        if not self.closed:
            self._dst.close()
            self.closed = True
        for p in (self.tmp, self.tmp.with_suffix(".cog.tif")):
            p.unlink(missing_ok=True)

    def __enter__(self) -> RasterWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def class_map_bits(values: Sequence[int], nodata: int) -> int:
    """Bits per pixel of a class map holding ``values`` and ``nodata``: the fewest of 1, 2, 4, 8."""
    needed = max((*values, nodata)).bit_length()
    return next(b for b in (1, 2, 4, 8) if b >= needed)


def class_map_writer(
    path: str | Path,
    profile: RasterProfile,
    scheme: ClassScheme | None = None,
    *,
    nodata: int = 255,
    cog: bool = False,
    compress: str | None = "deflate",
) -> RasterWriter:
    """A :class:`RasterWriter` for a one-band uint8 class map with a colour table.

    The map holds ``scheme.raw_values()`` (a :func:`~landcover.geo.map_values.map_scheme`);
    colours and names are keyed by those values.

    With a scheme the map is packed into :func:`class_map_bits` bits when fewer than 8 hold
    every class value and ``nodata``, so that its colour table (and QGIS' legend of the
    file alone) lists ``2 ** bits`` values instead of 256 (see the module docstring).

    The class names go into the file as band tags ``CLASS_<value>=<name>``; the QGIS style
    and GDAL category names are sidecars written once the file is in place
    (:func:`landcover.geo.qgis_style.write_class_map_sidecars`).
    """
    from landcover.geo.qgis_style import category_tags

    cmap = scheme.colormap(nodata=nodata) if scheme is not None else None
    tags = category_tags(scheme) if scheme is not None else None
    bits = class_map_bits(scheme.raw_values(), nodata) if scheme is not None else 8
    return RasterWriter(path, profile, count=1, dtype="uint8", nodata=nodata, colormap=cmap,
                        descriptions=["class"], cog=cog, compress=compress, tags=tags,
                        nbits=bits if bits < 8 else None)  # fmt: skip


def write_class_map(
    path: str | Path,
    classes: np.ndarray | Tensor,
    profile: RasterProfile,
    scheme: ClassScheme | None = None,
    *,
    valid: np.ndarray | Tensor | None = None,
    nodata: int = 255,
    cog: bool = False,
    style: bool = False,
    class_values: str = "file",
) -> Path:
    """Write a class map as a GeoTIFF keeping the input's CRS and transform.

    Args:
        path: Output GeoTIFF.
        classes: ``(H, W)`` class indices (``0..n-1``).
        profile: Profile of the input raster the map was predicted from.
        scheme: Class scheme whose colours become the colour table.
        valid: ``(H, W)`` validity of the input; invalid pixels are written as ``nodata``.
        nodata: Value of no-data pixels (255, the ignore index, by default).
        cog: Write a Cloud-Optimized GeoTIFF.
        style: Also write the QGIS style and GDAL category names next to it (needs
            ``scheme``; see :mod:`landcover.geo.qgis_style`).
        class_values: With ``scheme``: ``"file"`` writes each class's value from the class
            file, ``"index"`` the indices (:mod:`landcover.geo.map_values`).

    Returns:
        ``path``.
    """
    arr = classes.detach().cpu().numpy() if isinstance(classes, Tensor) else np.asarray(classes)
    if arr.shape != (profile.height, profile.width):
        raise ValueError(f"class map {arr.shape} does not match the raster "
                         f"({profile.height}, {profile.width})")  # fmt: skip
    arr = arr.astype(np.uint8)
    if scheme is not None:
        from landcover.geo.map_values import map_scheme, value_lut

        scheme = map_scheme(scheme, class_values, nodata)
        arr = value_lut(scheme, nodata)[arr]
    if valid is not None:
        v = valid.detach().cpu().numpy() if isinstance(valid, Tensor) else np.asarray(valid)
        arr = np.where(v.astype(bool), arr, np.uint8(nodata))
    with class_map_writer(path, profile, scheme, nodata=nodata, cog=cog) as w:
        w.write(arr, Window(0, 0, profile.width, profile.height))
    if style and scheme is not None:
        from landcover.geo.qgis_style import write_class_map_sidecars

        write_class_map_sidecars(path, scheme, nodata)
    return Path(path)
