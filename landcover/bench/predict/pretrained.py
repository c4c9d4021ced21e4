"""Part of ``landcover bench predict``: the shipped pretrained-encoder network.

``configs/folder.yaml`` ships a frozen ImageNet EfficientNet-Lite0 under an FPN decoder
with per-pixel LayerNorm (:data:`SHIPPED_ARCH`, :data:`SHIPPED_OPTIONS`; a test keeps them
equal to the config). For that network this section measures:

- **window dependence** on the largest real image of ``dubai-aerial``: the class maps of
  256-px windows (overlap 64), 512-px (128) and the default windows
  (:func:`~landcover.inference.default_window.default_window`: 1024 px, overlap 256) against
  one window holding the whole raster. The decoder is fitted to the image's own mask (Adam,
  :data:`FIT_STEPS` steps on random 256-px crops, the encoder frozen) so that the map has
  the structure of a trained model;
- **a whole scene** through ``landcover predict``'s default path (torch, default windows,
  4 windows per pass): a ``size``² 3-band uint8 GeoTIFF made of the real image repeated,
  in a fresh process (time, pixels per second, peak memory; :func:`~landcover.bench.
  predict._child`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

#: ``configs/folder.yaml``'s network.
SHIPPED_ARCH = "smp:tu-tf_efficientnet_lite0"
SHIPPED_OPTIONS: dict[str, Any] = {
    "encoder_weights": "imagenet",
    "freeze_encoder": True,
    "decoder": "fpn",
    "pyramid_channels": 64,
    "segmentation_channels": 32,
    "norm": "layer",
}
#: Adam steps of the decoder's fit to the image's mask.
FIT_STEPS = 60
#: Windows (size, overlap) compared with one whole-raster window, besides the default.
OTHER_WINDOWS = ((256, 64), (512, 128))


def fit_shipped_bundle(image: np.ndarray, mask: np.ndarray, *, steps: int = FIT_STEPS,
                       seed: int = 0) -> Any:  # fmt: skip
    """A bundle of the shipped network whose decoder is fitted to ``mask``.

    Args:
        image: ``(3, H, W)`` RGB, both sides at least 256 px (``windows.WINDOW``).
        mask: ``(H, W)`` class indices of :data:`landcover.bench.strokes.DUBAI`.
        steps: Adam steps on four random crops each.
        seed: Seed of the decoder's initialisation and the crops.
    """
    import torch

    from landcover.bench.predict.windows import WINDOW, fit_to_mask
    from landcover.bench.strokes import DUBAI
    from landcover.inference.bundle import ModelBundle
    from landcover.meta.registry import build_learner
    from landcover.models.factory import build_model

    torch.manual_seed(seed)
    model = build_model(SHIPPED_ARCH, 3, DUBAI.num_classes, **SHIPPED_OPTIONS)
    mean, std, loss = fit_to_mask(model, image, mask, steps=steps, seed=seed)
    learner = build_learner("mamlpp", model, loss, steps=1, inner_lr=0.1,
                            adapt=["head.classifier"])  # fmt: skip
    return ModelBundle.from_learner(
        learner.eval(), bands=["red", "green", "blue"], mean=mean.tolist(), std=std.tolist(),
        classes=DUBAI, tile_size=WINDOW,
    )  # fmt: skip


def window_agreement(image_path: Path, bundle: Any, out_dir: Path) -> dict[str, Any]:
    """Agreement of each window size's map with one whole-raster window's map."""
    import rasterio

    from landcover.inference.predict import Predictor, default_window
    from landcover.inference.predict_raster import predict_raster

    predictor = Predictor.from_bundle(bundle)
    with rasterio.open(image_path) as ds:
        h, w = ds.height, ds.width
    window = default_window(bundle)
    whole = -(-max(h, w) // 32) * 32
    cases = [("default", window, window // 4),
             *((f"{s} px", s, o) for s, o in OTHER_WINDOWS), ("whole", whole, 0)]  # fmt: skip
    maps: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    for name, win, ov in cases:
        out = out_dir / f"pretrained-{name.replace(' ', '')}.tif"
        start = time.perf_counter()
        predict_raster(predictor, image_path, out, window=win, overlap=ov, progress=False)
        seconds[name] = round(time.perf_counter() - start, 3)
        with rasterio.open(out) as ds:
            maps[name] = ds.read(1)
    agreement = {name: float((maps[name] == maps["whole"]).mean()) for name, _, _ in cases
                 if name != "whole"}  # fmt: skip
    return {
        "image": f"{image_path.parent.parent.name}/{image_path.name}",
        "width": w,
        "height": h,
        "window": window,
        "overlap": window // 4,
        "agreement": agreement,
        "classes_in_map": int(np.unique(maps["whole"]).size),
        "seconds": seconds,
    }


def write_tiled_scene(image: np.ndarray, size: int, path: Path) -> Path:
    """A ``size``² 3-band uint8 GeoTIFF (UTM, 50 cm) of ``image`` repeated, strip by strip."""
    import rasterio
    from affine import Affine
    from rasterio.crs import CRS

    h, w = image.shape[-2:]
    profile = {"driver": "GTiff", "width": size, "height": size, "count": 3, "dtype": "uint8",
               "crs": CRS.from_epsg(32640), "tiled": True, "blockxsize": 512, "blockysize": 512,
               "transform": Affine(0.5, 0, 300_000, 0, -0.5, 2_800_000)}  # fmt: skip
    reps = -(-size // w)
    with rasterio.open(path, "w", **profile) as dst:
        for y in range(0, size, 512):
            rows = min(512, size - y)
            idx = np.arange(y, y + rows) % h
            strip = np.tile(image[:, idx, :], (1, 1, reps))[:, :, :size]
            dst.write(np.ascontiguousarray(strip), window=((y, y + rows), (0, size)))
    return path


def pretrained_section(root: Path, out_dir: Path, *, scene: int, threads: int,
                       steps: int | None = None) -> dict[str, Any]:  # fmt: skip
    """Window agreement and the whole-scene run of the shipped network (see the module).

    ``steps``: the decoder's fit (default :data:`FIT_STEPS`).
    """
    steps = FIT_STEPS if steps is None else steps
    from landcover.bench.predict import scene as ps
    from landcover.bench.predict.windows import load_largest
    from landcover.inference.predict import default_window

    image_path, image, mask = load_largest(root)
    start = time.perf_counter()
    bundle = fit_shipped_bundle(image, mask, steps=steps)
    fit_s = time.perf_counter() - start
    result: dict[str, Any] = {"arch": SHIPPED_ARCH, "model_options": SHIPPED_OPTIONS,
                              "fit_steps": steps, "fit_seconds": fit_s}  # fmt: skip
    result["windows"] = window_agreement(image_path, bundle, out_dir)
    path = bundle.save(out_dir / "pretrained.bundle")
    start = time.perf_counter()
    raster = write_tiled_scene(image, scene, out_dir / "pretrained_scene.tif")
    gen_s = time.perf_counter() - start
    window = default_window(bundle)
    r = ps.run_child({"bundle": str(path), "raster": str(raster), "window": window,
                      "overlap": window // 4, "threads": threads, "device": "cpu",
                      "engine": "torch", "batch_size": 4, "balance": False,
                      "out": str(out_dir / "pretrained_scene_out.tif"),
                      "progress": True})  # fmt: skip
    raster.unlink()
    result["scene"] = {"raster": f"{scene}x{scene}", "bands": 3, "dtype": "uint8",
                       "engine": "torch", "window": window, "overlap": window // 4,
                       "threads": threads, **r, "generate_seconds": gen_s,
                       "px_per_s": scene * scene / max(r["seconds"], 1e-9),
                       "under_5_minutes": r["seconds"] < 300}  # fmt: skip
    return result


def print_section(p: dict[str, Any]) -> None:
    """The section's two tables."""
    w = p["windows"]
    print(f"\nshipped pretrained network ({p['arch']}, frozen; FPN + LayerNorm; decoder fitted "
          f"{p['fit_steps']} steps): windows vs one whole-raster window, {w['image']} "
          f"({w['width']}x{w['height']}, {w['classes_in_map']} classes in the map)")  # fmt: skip
    for name, value in w["agreement"].items():
        label = f"default {w['window']}/{w['overlap']}" if name == "default" else name
        print(f"  {label:<20} {value:.4f}")
    s = p["scene"]
    print(f"scene {s['raster']} RGB uint8, torch, windows {s['window']}/{s['overlap']}, "
          f"{s['threads']} threads: {s['seconds']:.1f} s ({s['px_per_s']:,.0f} px/s), peak RSS "
          f"{s['peak_rss_mb']:.0f} MB (+{s['growth_mb']:.0f} MB)")  # fmt: skip
