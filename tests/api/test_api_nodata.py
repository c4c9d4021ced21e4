"""The service's predict path honours a raster's finite nodata (issue 23, item 1)."""

from __future__ import annotations

import numpy as np
import rasterio
from apihelpers import HEADERS, pair_files, tiff_bytes, wait_status
from fastapi.testclient import TestClient


def test_finite_nodata_gives_the_map_of_nan_nodata(client: TestClient) -> None:
    """float32 with nodata -99999 and the same raster with NaN nodata: the same GeoTIFF
    pixels, nodata exactly outside the footprint, the class file's values inside."""
    r = client.post("/v1/adaptations", headers=HEADERS, data={"model": "tiny"},
                    files=pair_files(2))  # fmt: skip
    aid = wait_status(client, r.json()["id"])["id"]
    rng = np.random.default_rng(3)
    img = rng.normal(150, 50, (3, 72, 88)).astype(np.float32)
    rows, cols = np.mgrid[:72, :88]
    inside = (cols > 6 + rows // 3) & (rows < 64)
    maps = {}
    for name, fill in (("finite", -99999.0), ("nan", float("nan"))):
        raster = tiff_bytes(np.where(inside, img, np.float32(fill)), nodata=fill)
        p = client.post(f"/v1/adaptations/{aid}/predict", headers=HEADERS,
                        files={"raster": ("scene.tif", raster)})  # fmt: skip
        assert p.status_code == 200, p.text
        with rasterio.io.MemoryFile(p.content) as mem, mem.open() as ds:
            maps[name] = ds.read(1)
    np.testing.assert_array_equal(maps["finite"], maps["nan"])
    np.testing.assert_array_equal(maps["finite"] == 255, ~inside)
    assert np.isin(maps["finite"][inside], (1, 2, 3)).all()
