"""A tiny batch project on disk: bundles, a support folder, scenes and a manifest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio

from landcover.inference import predict_cli
from landcover.inference.testing import tiny_bundle
from tests.inference.conftest import _write_support_folder, _write_tif

#: Prediction options of the test manifests: small windows, so small scenes have many.
WINDOW, OVERLAP = 64, 16


def make_project(
    root: Path, *, scenes: int = 4, big: bool = True, bad: bool = True, block_pixels: int = 65536
) -> Path:
    """Write a project under ``root`` and return its manifest.

    One region ``r1`` adapted on a 3-tile support folder; ``scenes`` scenes of 200x180 px in
    ``scenes/``, a 1400x300 px scene (``big``: cut into blocks when there are fewer scenes
    than twice the worker threads) and a corrupt file (``bad``).
    """
    root.mkdir(parents=True, exist_ok=True)
    tiny_bundle(3, 3, mean=100.0, std=50.0).save(root / "meta.bundle")
    _write_support_folder(root / "support")
    rng = np.random.default_rng(1)
    (root / "scenes").mkdir()
    for i in range(scenes):
        img = rng.normal(100, 50, (3, 200, 180)).astype(np.float32)
        _write_tif(root / "scenes" / f"s{i}.tif", img)
    listed = ["scenes/*.tif"]
    if big:
        _write_tif(root / "big.tif", rng.normal(100, 50, (3, 1400, 300)).astype(np.float32))
        listed.append("big.tif")
    if bad:
        (root / "bad.tif").write_bytes(b"II*\x00" + b"not a raster " * 100)
        listed.append("bad.tif")
    manifest = root / "m.yaml"
    manifest.write_text(
        f"output: out\nblock_pixels: {block_pixels}\nretries: 1\n"
        f"predict: {{window: {WINDOW}, overlap: {OVERLAP}}}\n"
        "regions:\n  - name: r1\n    bundle: meta.bundle\n    support: support\n"
        f"    steps: 2\n    scenes: {listed}\n"
    )
    return manifest


def predict_reference(bundle: Path, scene: Path, out: Path, *extra: str) -> Path:
    """Map ``scene`` with ``landcover predict`` (the serial reference) into ``out``."""
    args = [str(bundle), str(scene), str(out), "--cog", "--window", str(WINDOW),
            "--overlap", str(OVERLAP), "--quiet", *extra]  # fmt: skip
    assert predict_cli.main(args) == 0
    return out


def same_raster(a: Path, b: Path) -> None:
    """Assert two GeoTIFFs hold the same pixels, georeferencing, colours and tags."""
    with rasterio.open(a) as x, rasterio.open(b) as y:
        np.testing.assert_array_equal(x.read(), y.read())
        px, py = dict(x.profile), dict(y.profile)
        nx, ny = px.pop("nodata"), py.pop("nodata")
        assert px == py
        assert nx == ny or (np.isnan(nx) and np.isnan(ny))
        assert x.tags(1) == y.tags(1)
        if x.dtypes[0] == "uint8":
            assert x.colormap(1) == y.colormap(1)
