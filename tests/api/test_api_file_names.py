"""Errors name the client's own files, never the service's staged names (tile_0000.jpg)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from apihelpers import HEADERS, png_bytes
from fastapi.testclient import TestClient
from PIL import Image


def jpeg(size: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), 120, np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def test_size_mismatch_names_the_users_image(client: TestClient, data_dir: Path) -> None:
    small, fit = png_bytes(np.ones((32, 32), np.uint8)), png_bytes(np.ones((48, 48), np.uint8))
    files = [
        ("images", ("other.jpg", jpeg(48))),
        ("masks", ("other.png", fit)),
        ("images", ("sizemismatch.jpg", jpeg(64))),
        ("masks", ("sizemismatch.png", small)),
    ]
    r = client.post("/v1/adaptations", headers=HEADERS, data={"model": "tiny"}, files=files)
    assert r.status_code == 422 and r.json()["code"] == "size_mismatch", r.text
    detail = r.json()["detail"]
    assert "tile_" not in detail, detail
    assert "'sizemismatch.png'" in detail and "its image 'sizemismatch.jpg' is 64×64" in detail
