"""GDAL virtual rasters (VRT): band selections, band stacks, row windows and mosaics.

A VRT is a small XML file that GDAL (and QGIS) reads as a raster made of other rasters,
without copying pixels. The batch mapper uses three kinds:

- :func:`subset_vrt`: some bands and/or some rows of one raster, made by GDAL itself
  through its ``vrt://`` connection string (the ``gdal_translate -of VRT`` of those
  options: nodata, masks and georeferencing are carried over);
- :func:`stack_vrt`: one band from each of several single-band files of the same grid
  (``gdalbuildvrt -separate``), for STAC items with one asset per band;
- :func:`mosaic_vrt`: the class maps of a region side by side in one raster
  (``gdalbuildvrt``), nodata pixels transparent, with the maps' colour table.
"""

from __future__ import annotations

import os
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import rasterio
import rasterio.shutil

from landcover.geo.raster import open_raster

#: numpy dtype name -> GDAL data type name.
_GDAL_TYPES = {"uint8": "Byte", "int8": "Int8", "uint16": "UInt16", "int16": "Int16",
               "uint32": "UInt32", "int32": "Int32", "float32": "Float32",
               "float64": "Float64"}  # fmt: skip


def _write_xml(root: ET.Element, out: Path) -> Path:
    ET.indent(root)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(ET.tostring(root, encoding="unicode") + "\n")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def subset_vrt(
    src: str | Path,
    out: str | Path,
    *,
    bands: Sequence[int] | None = None,
    rows: tuple[int, int] | None = None,
) -> Path:
    """A VRT of bands ``bands`` (1-based, in that order) and rows ``[start, stop)`` of ``src``.

    GDAL writes it (``vrt://SRC?bands=...&srcwin=...``), so the raster's nodata, mask,
    alpha band and georeferencing (shifted to the first row) are those of the source.
    """
    src, out = Path(src).resolve(), Path(out)
    with open_raster(src) as ds:  # a clear error for a missing or unreadable file
        width = ds.width
    options = []
    if bands is not None:
        options.append("bands=" + ",".join(str(int(b)) for b in bands))
    if rows is not None:
        options.append(f"srcwin=0,{int(rows[0])},{width},{int(rows[1]) - int(rows[0])}")
    url = f"vrt://{src}" + ("?" + "&".join(options) if options else "")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp.vrt")
    try:
        rasterio.shutil.copy(url, tmp, driver="VRT")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def stack_vrt(files: Sequence[str | Path], out: str | Path) -> Path:
    """Band 1 of each file, stacked as the bands of one VRT (files of one grid).

    Raises:
        ValueError: The files differ in size, CRS or transform (resample them first).
    """
    root = ET.Element("VRTDataset")
    first = None
    for i, f in enumerate(files, start=1):
        f = Path(f).resolve()
        with open_raster(f) as ds:
            grid = (ds.width, ds.height, ds.crs, ds.transform)
            if first is None:
                first = grid
                root.set("rasterXSize", str(ds.width))
                root.set("rasterYSize", str(ds.height))
                if ds.crs is not None:
                    ET.SubElement(root, "SRS").text = ds.crs.to_wkt()
                ET.SubElement(root, "GeoTransform").text = ", ".join(
                    repr(v) for v in ds.transform.to_gdal()
                )
            elif grid != first:
                raise ValueError(
                    f"{f} is not on the grid of {files[0]} ({grid[0]}x{grid[1]} vs "
                    f"{first[0]}x{first[1]}, or another CRS/transform); resample the "
                    "bands to one grid first"
                )
            band = ET.SubElement(root, "VRTRasterBand", dataType=_GDAL_TYPES[ds.dtypes[0]],
                                 band=str(i))  # fmt: skip
            if ds.nodata is not None:
                ET.SubElement(band, "NoDataValue").text = repr(float(ds.nodata))
            source = ET.SubElement(band, "SimpleSource")
            ET.SubElement(source, "SourceFilename", relativeToVRT="0").text = str(f)
            ET.SubElement(source, "SourceBand").text = "1"
    return _write_xml(root, Path(out))


def mosaic_vrt(maps: Sequence[str | Path], out: str | Path) -> Path:
    """A mosaic VRT of north-up rasters of one CRS and pixel size (``gdalbuildvrt``).

    Nodata pixels of a map let the maps under it show through; band 1's colour table and
    nodata value are those of the first map. Sources are stored relative to the VRT.

    Raises:
        ValueError: No maps, or maps of different CRS, pixel size or data type, or rotated.
    """
    if not maps:
        raise ValueError("a mosaic needs at least one map")
    out = Path(out)
    infos = []
    for m in maps:
        with open_raster(m) as ds:
            t = ds.transform
            if t.b != 0 or t.d != 0 or t.e >= 0:
                raise ValueError(f"{m}: rotated or south-up rasters cannot be mosaicked")
            infos.append((Path(m), ds.width, ds.height, ds.crs, t, ds.dtypes[0], ds.nodata))
            if len(infos) == 1:
                try:
                    colormap = ds.colormap(1)
                except ValueError:
                    colormap = None
    _, _, _, crs, t0, dtype, nodata = infos[0]
    for m, _, _, c, t, d, _ in infos[1:]:
        if c != crs or (t.a, t.e) != (t0.a, t0.e) or d != dtype:
            raise ValueError(f"{m}: CRS, pixel size or data type differ from {infos[0][0]}; "
                             "mosaic such maps separately")  # fmt: skip
    xres, yres = t0.a, -t0.e
    left = min(t.c for *_, t, _, _ in infos)
    top = max(t.f for *_, t, _, _ in infos)
    right = max(t.c + w * xres for _, w, _, _, t, _, _ in infos)
    bottom = min(t.f - h * yres for _, _, h, _, t, _, _ in infos)
    width, height = round((right - left) / xres), round((top - bottom) / yres)
    root = ET.Element("VRTDataset", rasterXSize=str(width), rasterYSize=str(height))
    if crs is not None:
        ET.SubElement(root, "SRS").text = crs.to_wkt()
    ET.SubElement(root, "GeoTransform").text = ", ".join(
        repr(float(v)) for v in (left, xres, 0.0, top, 0.0, -yres)
    )
    band = ET.SubElement(root, "VRTRasterBand", dataType=_GDAL_TYPES[dtype], band="1")
    if nodata is not None:
        ET.SubElement(band, "NoDataValue").text = repr(float(nodata))
    if colormap:
        ET.SubElement(band, "ColorInterp").text = "Palette"
        table = ET.SubElement(band, "ColorTable")
        for v in range(max(colormap) + 1):
            rgba = colormap.get(v, (0, 0, 0, 0))
            ET.SubElement(table, "Entry", c1=str(rgba[0]), c2=str(rgba[1]), c3=str(rgba[2]),
                          c4=str(rgba[3]))  # fmt: skip
    base = out.resolve().parent
    for path, w, h, _, t, _, nd in infos:
        source = ET.SubElement(band, "ComplexSource")
        rel = os.path.relpath(path.resolve(), base)
        ET.SubElement(source, "SourceFilename", relativeToVRT="1").text = rel
        ET.SubElement(source, "SourceBand").text = "1"
        ET.SubElement(source, "SrcRect", xOff="0", yOff="0", xSize=str(w), ySize=str(h))
        ET.SubElement(source, "DstRect", xOff=str(round((t.c - left) / xres)),
                      yOff=str(round((top - t.f) / yres)), xSize=str(w), ySize=str(h))  # fmt: skip
        if nd is not None:
            ET.SubElement(source, "NODATA").text = repr(float(nd))
    return _write_xml(root, out)
