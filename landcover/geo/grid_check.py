"""Do an image and its mask lie on the same grid? CRS, pixel size and origin, with numbers.

Images and masks are paired by file stem and read pixel for pixel, so a mask in another
CRS (another variant of the same State Plane system, say), with another pixel size or
shifted by some pixels labels the wrong pixels without any error. ``landcover data
inspect`` lists such pairs (:func:`grid_mismatches`). Masks without georeferencing (PNG)
are not compared.
"""

from __future__ import annotations

from pathlib import Path

from rasterio.crs import CRS
from rasterio.transform import Affine

from landcover.geo.errors import GeoDataError
from landcover.geo.raster import RasterProfile, read_profile

__all__ = ["compare_grids", "grid_mismatches"]

#: Differences below this share of a pixel are rounding, not a mismatch.
TOLERANCE_PX = 0.01


def _crs_name(crs: CRS) -> str:
    wkt = crs.to_wkt()
    name = wkt.split('"')[1] if '"' in wkt else crs.to_string()
    epsg = crs.to_epsg()
    return f"EPSG:{epsg} ({name})" if epsg else repr(name)


def compare_grids(image: RasterProfile, mask: RasterProfile) -> list[str]:
    """What differs between the grids of an image and its mask (empty: the same grid)."""
    out: list[str] = []
    if image.crs is not None and mask.crs is not None and image.crs != mask.crs:
        out.append(f"CRS differs: image {_crs_name(image.crs)}, mask {_crs_name(mask.crs)}")
    ti, tm = image.transform, mask.transform
    if ti == Affine.identity() or tm == Affine.identity():
        return out
    if abs(ti.a - tm.a) > TOLERANCE_PX * abs(ti.a) or abs(ti.e - tm.e) > TOLERANCE_PX * abs(ti.e):
        out.append(f"pixel size differs: image {abs(ti.a):g} x {abs(ti.e):g}, "
                   f"mask {abs(tm.a):g} x {abs(tm.e):g} (CRS units)")  # fmt: skip
    dx, dy = (tm.c - ti.c) / ti.a + 0.0, (tm.f - ti.f) / ti.e + 0.0  # no "-0.00"
    if abs(dx) > TOLERANCE_PX or abs(dy) > TOLERANCE_PX:
        out.append(f"mask origin is {dx:+.2f} columns, {dy:+.2f} rows from the image's "
                   f"({tm.c - ti.c:+g}, {tm.f - ti.f:+g} CRS units)")  # fmt: skip
    return out


def grid_mismatches(root: str | Path) -> list[tuple[Path, str]]:
    """``(mask, what differs)`` for every image/mask pair of a folder dataset off its grid."""
    from landcover.geo.folder import _pairs, region_folders

    found: list[tuple[Path, str]] = []
    for folder in region_folders(root):
        for _, image, mask in _pairs(folder, problems=[]):
            try:
                diffs = compare_grids(read_profile(image), read_profile(mask))
            except GeoDataError:  # unreadable files are reported by find_problems
                continue
            found.extend((mask, d) for d in diffs)
    return found
