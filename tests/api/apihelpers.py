"""Helpers of the service tests: tiny real bundles, tiles and rasters in memory, polling."""

from __future__ import annotations

import contextlib
import io
import time
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from PIL import Image
from rasterio.crs import CRS
from rasterio.transform import from_origin

from api.settings import Settings
from landcover.bench.api import free_port, start_server, stop_server
from landcover.geo.classes import ClassScheme
from landcover.inference.testing import tiny_bundle

KEY_A = "key-a-0123456789abcdef"
KEY_B = "key-b-0123456789abcdef"
HEADERS = {"X-API-Key": KEY_A}
CRS_UTM = CRS.from_epsg(32618)
TRANSFORM = from_origin(500000.0, 4200000.0, 30.0, 30.0)
SCHEME = ClassScheme(
    names=("water", "forest", "field"),
    values=(1, 2, 3),
    colors=((0, 0, 255), (0, 128, 0), (255, 255, 0)),
    ignore_value=0,
)

#: The tiny U-Net of the test bundles (``tiny_bundle``'s, with two GroupNorm groups).
TINY_UNET = {"width": 4, "depth": 2, "norm": "group", "groups": 2}


def make_bundle(path: Path, bands: int = 3, tile: int = 32) -> Path:
    """An untrained small U-Net + MAML learner, saved as a real bundle (bands ``B1..``)."""
    bundle = tiny_bundle(bands, SCHEME.num_classes, model_options=TINY_UNET, tile_size=tile,
                         mean=100.0, std=50.0)  # fmt: skip
    bands_ = [f"B{i + 1}" for i in range(bands)]
    return replace(bundle, bands=bands_, classes=SCHEME.to_dict(), inner_steps=2, info={}).save(
        path
    )


#: The database of the running test (set by the ``data_dir`` fixture; ``None``: SQLite).
DATABASE_URL: str | None = None


def settings_for(data_dir: Path, models_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": DATABASE_URL,
        "data_dir": data_dir,
        "models_dir": models_dir,
        "api_keys": [KEY_A, KEY_B],
        "poll_s": 0.05,
        "heartbeat_s": 0.2,
        "predict_wait_s": 30.0,
        "rate_limit": "10000/second",
        "auth_failure_limit": "10000/second",
        **overrides,
    }
    return Settings(**values)


# ---------------------------------------------------------------------- tiles
def tiff_bytes(
    array: np.ndarray, *, nodata: float | None = None, crs: CRS | None = CRS_UTM
) -> bytes:
    """A GeoTIFF of ``array`` ((C, H, W) or (H, W)) in memory."""
    arr = array if array.ndim == 3 else array[None]
    profile = {
        "driver": "GTiff",
        "width": arr.shape[2],
        "height": arr.shape[1],
        "count": arr.shape[0],
        "dtype": str(arr.dtype),
        "nodata": nodata,
    }
    if crs is not None:
        profile.update(crs=crs, transform=TRANSFORM)
    with rasterio.io.MemoryFile() as mem:
        with mem.open(**profile) as dst:
            dst.write(arr)
        return mem.read()


def png_bytes(mask: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def tile_pair(seed: int, size: int = 32, bands: int = 3) -> tuple[bytes, bytes]:
    """A uint16 image whose class (1..3) is readable from band 1, and its value mask."""
    rng = np.random.default_rng(seed)
    mask = rng.integers(1, 4, size=(size, size)).astype(np.uint8)
    image = mask[None].repeat(bands, 0) * 60 + rng.integers(0, 20, (bands, size, size))
    return tiff_bytes(image.astype(np.uint16), nodata=None), png_bytes(mask)


def pair_files(n: int, size: int = 32, bands: int = 3) -> list[tuple[str, tuple[str, bytes]]]:
    files: list[tuple[str, tuple[str, bytes]]] = []
    for i in range(n):
        img, mask = tile_pair(i, size, bands)
        files.append(("images", (f"t{i}.tif", img)))
        files.append(("masks", (f"t{i}.png", mask)))
    return files


def support_zip(n: int, classes: str | None = None, prefix: str = "region/") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(n):
            img, mask = tile_pair(i)
            zf.writestr(f"{prefix}images/z{i}.tif", img)
            zf.writestr(f"{prefix}masks/z{i}.png", mask)
        if classes is not None:
            zf.writestr(f"{prefix}classes.yaml", classes)
    return buf.getvalue()


def query_raster(size: int = 80, nodata_block: bool = True) -> bytes:
    """A 3-band uint16 raster with nodata 0 in its top-left corner."""
    rng = np.random.default_rng(7)
    image = rng.integers(50, 250, size=(3, size, size)).astype(np.uint16)
    if nodata_block:
        image[:, :10, :10] = 0
    return tiff_bytes(image, nodata=0)


@contextlib.contextmanager
def served(root: Path, env: dict[str, str]) -> Iterator[str]:
    """``landcover serve`` in a subprocess with :func:`make_bundle`'s bundle as ``tiny``.

    Args:
        root: Folder for the bundle (``models/``), the service's data and ``server.log``.
        env: Extra environment of the server (``LANDCOVER_*`` settings); keys A and B.

    Yields:
        The server's base URL; the server is stopped on exit, whatever happened.
    """
    make_bundle(root / "models" / "tiny.bundle")
    port = free_port()
    proc = start_server(port, root / "data", root / "models", [KEY_A, KEY_B], env=env,
                        log=root / "server.log")  # fmt: skip
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_server(proc)
        assert proc.poll() is not None


def wait_status(
    client: Any,
    adaptation_id: str,
    headers: dict[str, str] = HEADERS,
    timeout: float = 60.0,
    interval: float = 0.05,
) -> dict[str, Any]:
    """Poll an adaptation every ``interval`` seconds until it is done or failed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.get(f"/v1/adaptations/{adaptation_id}", headers=headers)
        body = response.json()
        if response.status_code == 429:  # polled faster than the read limit: back off
            time.sleep(max(interval, float(response.headers.get("Retry-After", 1))))
            continue
        assert response.status_code == 200, (response.status_code, body)
        if body["status"] in ("done", "failed"):
            return body
        time.sleep(interval)
    raise AssertionError(f"adaptation {adaptation_id} did not finish in {timeout} s: {body}")


def stored_entries(data_dir: Path) -> list[str]:
    """Everything under the storage folder except the database files."""
    out = []
    for sub in ("adaptations", "tmp"):
        root = data_dir / sub
        if root.is_dir():
            out += [str(p.relative_to(data_dir)) for p in root.rglob("*")]
    return sorted(out)


def rejected(
    client: Any, data_dir: Path, status: int, code: str, words: list[str], **kwargs: Any
) -> dict[str, Any]:
    """POST an adaptation, expect a 4xx whose detail contains ``words``, and no trace."""
    kwargs.setdefault("data", {"model": "tiny"})
    r = client.post("/v1/adaptations", headers=HEADERS, **kwargs)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["code"] == code, body
    for word in words:
        assert word in body["detail"], (word, body["detail"])
    assert client.get("/v1/adaptations", headers=HEADERS).json()["items"] == []
    assert stored_entries(data_dir) == []
    return body
