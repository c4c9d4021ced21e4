"""Helpers of the browser tests: a tiny real bundle, tiles on disk, a uvicorn process, Chromium."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import rasterio
from PIL import Image
from rasterio.crs import CRS
from rasterio.transform import from_origin

from landcover.geo.classes import ClassScheme
from landcover.inference.testing import tiny_bundle

KEY = "web-test-key-0123456789abcdef"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCHEME = ClassScheme(
    names=("water", "forest", "field"),
    values=(1, 2, 3),
    colors=((30, 90, 220), (20, 130, 40), (240, 200, 40)),
    ignore_value=0,
)

#: The tiny U-Net of the test bundles (``tiny_bundle``'s, with two GroupNorm groups).
TINY_UNET = {"width": 4, "depth": 2, "norm": "group", "groups": 2}


def make_bundle(path: Path, bands: int = 3, tile: int = 32) -> Path:
    """An untrained small U-Net + MAML learner saved as a real bundle (model name = stem)."""
    bundle = tiny_bundle(bands, SCHEME.num_classes, model_options=TINY_UNET, tile_size=tile,
                         mean=100.0, std=50.0)  # fmt: skip
    bands_ = ["B04", "B03", "B02"][:bands]
    return replace(bundle, bands=bands_, classes=SCHEME.to_dict(), inner_steps=2, info={}).save(
        path
    )


def class_map(size: int, seed: int) -> np.ndarray:
    """Three vertical class bands (values 1..3) with a seeded offset."""
    cols = (np.arange(size) + seed * 5) % size
    return (1 + (cols * 3) // size).astype(np.uint8)[None].repeat(size, 0)


def write_tiff(path: Path, array: np.ndarray, nodata: float | None = None) -> Path:
    arr = array if array.ndim == 3 else array[None]
    with rasterio.open(
        path, "w", driver="GTiff", width=arr.shape[2], height=arr.shape[1], count=arr.shape[0],
        dtype=str(arr.dtype), crs=CRS.from_epsg(32618),
        transform=from_origin(500000.0, 4200000.0, 10.0, 10.0), nodata=nodata,
    ) as dst:  # fmt: skip
        dst.write(arr)
    return path


def image_of(mask: np.ndarray, seed: int) -> np.ndarray:
    """A uint16 3-band image whose colour follows the class map (water blue, forest green...)."""
    rng = np.random.default_rng(seed)
    palette = np.array([[0, 0, 0], [40, 80, 200], [30, 140, 50], [220, 190, 60]], dtype=np.uint16)
    rgb = palette[mask].transpose(2, 0, 1) + rng.integers(0, 25, (3, *mask.shape))
    return rgb.astype(np.uint16)


def write_tiles(folder: Path, n: int = 3, size: int = 48) -> list[tuple[Path, Path]]:
    """``n`` GeoTIFF images with PNG value masks, paired by stem."""
    folder.mkdir(parents=True, exist_ok=True)
    pairs = []
    for i in range(n):
        mask = class_map(size, i)
        img = write_tiff(folder / f"tile{i}.tif", image_of(mask, i))
        mpath = folder / f"tile{i}.png"
        Image.fromarray(mask).save(mpath)
        pairs.append((img, mpath))
    return pairs


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve(
    argv: list[str],
    env: dict[str, str],
    port: int,
    log: Path,
    timeout: float = 60.0,
    cwd: Path | None = None,
) -> Iterator[str]:
    """Run a real server process until the block ends; yields its base URL."""
    full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, env=full_env, stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not answer in {timeout} s:\n{log.read_text()}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def uvicorn_argv(port: int) -> list[str]:
    return [sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory",
            "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]  # fmt: skip


DUBAI = Path(__file__).resolve().parents[2] / "data" / "samples" / "dubai-aerial"
DUBAI_CLASSES = Path(__file__).resolve().parents[2] / "configs" / "classes" / "dubai-aerial.yaml"


def dubai_bundle(path: Path, tile: int = 64) -> Path:
    """An untrained 3-band bundle with the Dubai aerial classes (model name = stem)."""
    scheme = ClassScheme.from_file(DUBAI_CLASSES)
    bundle = tiny_bundle(3, scheme.num_classes, model_options=TINY_UNET, tile_size=tile,
                         mean=120.0, std=50.0)  # fmt: skip
    return replace(bundle, bands=["red", "green", "blue"], classes=scheme.to_dict(),
                   inner_steps=2, info={}).save(path)  # fmt: skip


def dubai_real_size_pair(folder: Path, name: str = "dubai_1126") -> tuple[Path, Path]:
    """Tile 4's first JPEG and palette mask at 1126×1058 px, the dataset's larger tile size.

    The shared copy holds Tiles 1-4 (at most 1099×846 px); resampled to 1126×1058 the pair
    is over the service's former limit of 1,048,576 px per tile.
    """
    folder.mkdir(parents=True, exist_ok=True)
    image = Image.open(DUBAI / "Tile 4" / "images" / "image_part_001.jpg")
    mask = Image.open(DUBAI / "Tile 4" / "masks" / "image_part_001.png")
    out_image, out_mask = folder / f"{name}.jpg", folder / f"{name}.png"
    image.resize((1126, 1058), Image.Resampling.BILINEAR).save(out_image, quality=90)
    mask.resize((1126, 1058), Image.Resampling.NEAREST).save(out_mask)  # palette kept
    return out_image, out_mask
