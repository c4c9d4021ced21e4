"""Class maps whose colour table lists their classes, not 256 values (issue 21).

A TIFF palette has ``2 ** bits`` entries and GDAL reads that many; QGIS' legend of the file
alone lists every entry (``tests/clients/test_qgis_class_map.py`` checks QGIS 3.22). The
writer packs a class map into the fewest bits (1, 2 or 4) that hold its values and nodata.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from PIL import Image
from rasterio.crs import CRS

from landcover.geo.classes import ClassScheme
from landcover.geo.raster import RasterProfile
from landcover.geo.writer import RasterWriter, class_map_bits, write_class_map

#: Three classes with the class file's values 1..3.
THREE = ClassScheme(names=("building", "road", "water"), values=(1, 2, 3),
                    colors=((60, 16, 152), (110, 193, 228), (226, 169, 41)))  # fmt: skip
#: Seven classes with the class file's values 1..7.
SEVEN = ClassScheme(
    names=("water", "forest", "field", "road", "building", "bare", "grass"),
    values=(1, 2, 3, 4, 5, 6, 7),
    colors=((0, 0, 255), (0, 128, 0), (255, 255, 0), (128, 128, 128), (255, 0, 0),
            (200, 180, 150), (120, 220, 120)),
)  # fmt: skip


def _profile(size: int) -> RasterProfile:
    return RasterProfile(width=size, height=size, count=3, dtype="uint8",
                         crs=CRS.from_epsg(32640),
                         transform=Affine(0.5, 0, 300_000, 0, -0.5, 2_790_000),
                         nodata=None, descriptions=(None,) * 3)  # fmt: skip


def _classes(size: int, n: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Class indices 0..n-1 in bands, and a validity mask with a nodata corner."""
    classes = (np.arange(size)[None, :] * n // size).repeat(size, 0)
    valid = np.ones((size, size), bool)
    valid[: size // 4, : size // 4] = False
    return classes, valid


def test_class_map_bits() -> None:
    assert class_map_bits([1, 2, 3], 0) == 2
    assert class_map_bits([0, 1, 2], 3) == 2
    assert class_map_bits([1], 0) == 1
    assert class_map_bits([1, 2, 3, 4, 5, 6, 7], 0) == 4  # not 3: TIFF baseline depths only
    assert class_map_bits([1, 2, 3], 255) == 8
    assert class_map_bits([10, 20, 80], 0) == 8


@pytest.mark.parametrize("cog", [False, True])
@pytest.mark.parametrize(("scheme", "bits"), [(THREE, 2), (SEVEN, 4)])
def test_small_values_with_nodata_0_make_a_short_colour_table(
    tmp_path: Path, cog: bool, scheme: ClassScheme, bits: int
) -> None:
    """Before: every class map carried a 256-entry table (252 black entries for 3 classes)."""
    size = 1100 if cog else 96  # a COG over 512 px carries overviews
    classes, valid = _classes(size, scheme.num_classes)
    out = write_class_map(tmp_path / "map.tif", classes, _profile(size), scheme, valid=valid,
                          nodata=0, cog=cog)  # fmt: skip
    with rasterio.open(out) as dst:
        cmap = dst.colormap(1)
        assert dst.tags(1, ns="IMAGE_STRUCTURE").get("NBITS") == str(bits)
        assert dst.dtypes[0] == "uint8" and dst.nodata == 0
        arr = dst.read(1)
        if cog:
            assert dst.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
            assert dst.overviews(1) and dst.overviews(1)[0] == 2
            ov = dst.read(1, out_shape=(size // 2, size // 2))
            assert set(np.unique(ov)) <= {0, *scheme.values}  # nearest overviews: values only
        assert dst.crs.to_epsg() == 32640
    # 2 bits: nodata and the 3 classes, nothing else; 4 bits: 16 entries
    assert sorted(cmap) == list(range(2**bits))
    for value, rgb in zip(scheme.values, scheme.colors):
        assert cmap[value][:3] == rgb
    # the class file's values as written, nodata where the input had none
    assert (arr[~valid] == 0).all()
    np.testing.assert_array_equal(arr[valid], classes[valid] + 1)
    if not cog:  # TIFF baseline depth: Pillow reads it too
        np.testing.assert_array_equal(np.asarray(Image.open(out)), arr)


def test_nodata_255_still_needs_all_256_entries(tmp_path: Path) -> None:
    """The default map: 255 needs 8 bits, so its table has 256 entries (TIFF ColorMap)."""
    classes, valid = _classes(64)
    out = write_class_map(tmp_path / "map.tif", classes, _profile(64), SEVEN, valid=valid)
    with rasterio.open(out) as dst:
        assert "NBITS" not in dst.tags(1, ns="IMAGE_STRUCTURE")
        assert dst.nodata == 255 and len(dst.colormap(1)) == 256
        assert (dst.read(1)[~valid] == 255).all()


def test_values_that_do_not_fit_the_bits_are_refused_and_leave_no_file(tmp_path: Path) -> None:
    out = tmp_path / "map.tif"
    writer = RasterWriter(out, _profile(32), nbits=2, nodata=0)
    with pytest.raises(ValueError, match="does not fit the raster's 2 bits"), writer as w:
        w.write(np.full((32, 32), 4, np.uint8), rasterio.windows.Window(0, 0, 32, 32))
    assert not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match=r"1\.\.7 bits"):
        RasterWriter(out, _profile(32), nbits=8)
