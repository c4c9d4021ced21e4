from __future__ import annotations

import resource
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.windows import Window

from landcover.geo.classes import ClassScheme
from landcover.geo.errors import GeoDataError
from landcover.geo.raster import (
    iter_windows,
    read_profile,
    read_raster,
)
from landcover.geo.writer import RasterWriter, write_class_map


@pytest.fixture()
def landsat(shared_data: Path) -> Path:
    path = shared_data / "geotiff" / "RGB.byte.tif"
    if not path.is_file():
        pytest.skip("RGB.byte.tif not in shared data")
    return path


def test_read_landsat_profile_and_nodata(landsat: Path) -> None:
    data = read_raster(landsat)
    assert data.image.shape == (3, 718, 791) and data.image.dtype == torch.float32
    assert data.profile.crs.to_epsg() == 32618
    assert data.profile.nodata == 0
    with rasterio.open(landsat) as src:
        raw = src.read()
    # nodata mask: pixels where any band equals its nodata value. GDAL's dataset mask
    # (every band nodata) keeps 710 pixels along the footprint's edge whose red band is 0.
    expected_invalid = (raw == 0).any(axis=0)
    assert torch.equal(data.nodata_mask, torch.from_numpy(expected_invalid))
    assert int(expected_invalid.sum() - (raw == 0).all(axis=0).sum()) == 710
    assert 0 < expected_invalid.mean() < 1
    assert bool(data.image[:, data.nodata_mask].isnan().all())


def test_window_read_shifts_transform(landsat: Path) -> None:
    full = read_raster(landsat)
    win = Window(100, 200, 64, 32)
    part = read_raster(landsat, window=win, bands=[2])
    assert part.image.shape == (1, 32, 64)
    band = read_raster(landsat, bands=[2])  # validity of band 2 alone (NaN where nodata)
    torch.testing.assert_close(part.image[0], band.image[0, 200:232, 100:164], rtol=0, atol=0,
                               equal_nan=True)  # fmt: skip
    t = full.profile.transform
    x, y = t.c + 100 * t.a, t.f + 200 * t.e
    assert part.profile.transform.c == pytest.approx(
        x
    ) and part.profile.transform.f == pytest.approx(y)
    with pytest.raises(GeoDataError, match="outside"):
        read_raster(landsat, window=Window(780, 0, 64, 64))


@pytest.mark.parametrize("cog", [False, True])
def test_class_map_round_trip_keeps_georeferencing(
    landsat: Path, tmp_path: Path, cog: bool
) -> None:
    data = read_raster(landsat)
    scheme = ClassScheme(names=("dark", "mid", "bright"), values=(1, 2, 3))
    classes = torch.bucketize(data.image.mean(0), torch.tensor([60.0, 120.0]))
    out = write_class_map(
        tmp_path / "map.tif", classes, data.profile, scheme, valid=data.valid, cog=cog
    )
    with rasterio.open(out) as dst:
        assert dst.crs == data.profile.crs
        assert dst.transform.almost_equals(data.profile.transform)
        assert dst.nodata == 255 and dst.dtypes[0] == "uint8"
        arr = dst.read(1)
        cmap = dst.colormap(1)
        # both are DEFLATE (a COG's temporary file is not compressed: the COG driver is)
        assert dst.compression == rasterio.enums.Compression.deflate
        if cog:
            assert dst.overviews(1), "COG should carry overviews"
            assert dst.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
    # the map holds the class file's values 1..3, the colour table is keyed by them
    assert cmap[1][:3] == scheme.colors[0] and cmap[3][:3] == scheme.colors[2]
    invalid = data.nodata_mask.numpy()
    assert (arr[invalid] == 255).all()
    assert np.array_equal(arr[~invalid], classes.numpy()[~invalid] + 1)
    assert read_profile(out).crs.to_epsg() == 32618
    assert not list(tmp_path.glob(".*tmp*")), "temporary files left behind"


def test_writer_compress_none_writes_an_uncompressed_geotiff(landsat: Path, tmp_path: Path) -> None:
    profile = read_profile(landsat)
    with RasterWriter(tmp_path / "plain.tif", profile, compress=None) as w:
        w.write(np.ones((64, 64), np.uint8), Window(0, 0, 64, 64))
    with rasterio.open(tmp_path / "plain.tif") as dst:
        assert dst.compression is None and dst.read(1, window=Window(0, 0, 64, 64)).all()


def test_class_map_without_georeferencing(tmp_path: Path) -> None:
    from PIL import Image

    Image.fromarray(np.zeros((6, 5, 3), np.uint8)).save(tmp_path / "plain.png")
    data = read_raster(tmp_path / "plain.png")
    assert data.profile.crs is None and bool(data.valid.all())
    out = write_class_map(tmp_path / "map.tif", torch.ones(6, 5, dtype=torch.long), data.profile)
    with rasterio.open(out) as dst:
        assert dst.crs is None and dst.read(1).tolist() == [[1] * 5] * 6


def test_writer_aborts_atomically(landsat: Path, tmp_path: Path) -> None:
    profile = read_profile(landsat)
    target = tmp_path / "out.tif"
    with pytest.raises(RuntimeError), RasterWriter(target, profile) as w:
        w.write(np.zeros((64, 64), np.uint8), Window(0, 0, 64, 64))
        raise RuntimeError("boom")
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_iter_windows_cover_exactly() -> None:
    covered = np.zeros((70, 100), int)
    wins = list(iter_windows(100, 70, 32, overlap=8))
    for w in wins:
        assert (w.width, w.height) == (32, 32)
        covered[w.row_off : w.row_off + 32, w.col_off : w.col_off + 32] += 1
    assert covered.min() >= 1
    small = list(iter_windows(10, 5, 32))
    assert [(w.width, w.height) for w in small] == [(10, 5)]
    with pytest.raises(ValueError):
        list(iter_windows(10, 10, 4, overlap=4))


def test_corrupt_and_missing_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"II*\x00garbage" * 10)
    with pytest.raises(GeoDataError, match=r"bad\.tif"):
        read_raster(bad)
    with pytest.raises(GeoDataError, match="not found"):
        read_raster(tmp_path / "nope.tif")


STREAM = textwrap.dedent(
    """
    import resource, sys
    import numpy as np
    from rasterio.windows import Window
    from rasterio.transform import Affine
    from rasterio.crs import CRS
    from landcover.geo.raster import RasterProfile, iter_windows, read_raster
    from landcover.geo.writer import RasterWriter
    size, out = int(sys.argv[1]), sys.argv[2]
    profile = RasterProfile(size, size, 4, "uint16", CRS.from_epsg(32632),
                            Affine(10, 0, 300000, 0, -10, 5000000), 0, (None,) * 4)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with RasterWriter(out, profile, count=4, dtype="uint16", nodata=0) as w:
        for win in iter_windows(size, size, 256):
            r, c = int(win.row_off), int(win.col_off)
            yy, xx = np.mgrid[r:r + 256, c:c + 256]
            w.write(np.stack([(yy + xx + b) % 60000 + 1 for b in range(4)]).astype(np.uint16), win)
    total = 0.0
    for win in iter_windows(size, size, 256):
        total += float(read_raster(out, window=win).image.sum())
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(after - before, total)
    """
)


@pytest.mark.slow
def test_windowed_pass_memory_independent_of_raster_size(tmp_path: Path) -> None:
    """Write then read a raster in 256-px windows: peak RSS growth does not scale with size."""
    growth = {}
    for size in (1024, 4096):  # 8 MiB vs 128 MiB of uint16 pixels (4 bands)
        res = subprocess.run(
            [sys.executable, "-c", STREAM, str(size), str(tmp_path / f"r{size}.tif")],
            capture_output=True,
            text=True,
            check=True,
        )
        kib, total = res.stdout.split()
        growth[size] = int(kib)
        with rasterio.open(tmp_path / f"r{size}.tif") as src:
            assert (src.width, src.height, src.count) == (size, size, 4)
            assert src.block_shapes[0] == (256, 256)
        # values check: the streamed sum equals the closed form computed here
        yy, xx = np.mgrid[0:size, 0:size]
        expected = sum(float(((yy + xx + b) % 60000 + 1).sum()) for b in range(4))
        assert float(total) == pytest.approx(expected, rel=1e-6)
    raster_mib = 4096 * 4096 * 4 * 2 / 2**20
    # the large raster is 128 MiB; streaming it must grow the peak by far less than that
    assert growth[4096] / 1024 < raster_mib / 4, growth
    # and it is independent of the raster size: 16x more pixels, (about) the same peak
    assert growth[4096] < growth[1024] + 16 * 1024, growth
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss > 0
