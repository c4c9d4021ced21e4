"""Fixtures of the real-client tests: a real aerial image as a georeferenced GeoTIFF."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from PIL import Image

DUBAI = Path(__file__).resolve().parents[2] / "data" / "samples" / "dubai-aerial"
#: A real 1099x846 aerial tile (the dataset's largest) and its mask.
TILE = DUBAI / "Tile 4" / "images" / "image_part_009.jpg"


@pytest.fixture(scope="session")
def aerial() -> tuple[np.ndarray, np.ndarray]:
    """``(3, H, W)`` uint8 RGB of the real tile and its ``(H, W)`` class-index mask."""
    if not TILE.is_file():
        pytest.skip(f"the dubai-aerial sample is not at {DUBAI}")
    from landcover.bench.strokes import DUBAI as SCHEME

    image = np.asarray(Image.open(TILE).convert("RGB")).transpose(2, 0, 1).copy()
    mask_path = TILE.parent.parent / "masks" / f"{TILE.stem}.png"
    raw = np.asarray(Image.open(mask_path).convert("RGB")).copy()
    raw[(raw == 0).all(axis=-1)] = (155, 155, 155)  # black = unlabeled
    return image, SCHEME.encode(raw, mask_path)


def write_geotiff(path: Path, image: np.ndarray, pixel_m: float = 0.5) -> Path:
    """``image`` as a GeoTIFF in UTM 40N (Dubai) with ``pixel_m`` pixels."""
    profile = {"driver": "GTiff", "width": image.shape[2], "height": image.shape[1],
               "count": image.shape[0], "dtype": str(image.dtype), "crs": "EPSG:32640",
               "transform": Affine(pixel_m, 0, 300_000, 0, -pixel_m, 2_790_000)}  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(image)
    return path
