"""Does the map depend on its windows? Default windows against one whole-raster window.

A model that normalises with the statistics of the data at hand (transductive BatchNorm,
as ``configs/folder.yaml`` ships; GroupNorm) would normalise each window with its own
statistics, and class edges would follow the windows' seams. ``landcover predict``
normalises every window with one statistic of the whole raster
(:mod:`landcover.inference.raster_norm`); this bench measures, on a real aerial JPEG
(the largest image of ``dubai-aerial``), how well the map of the default windows
(:func:`~landcover.inference.default_window.default_window`: 1024 px, overlap 256, for this
stride-4 model; and 256 px, overlap 64, the default before) agrees with the map of one
window that holds the whole raster, with the raster's statistic and with each window's
own (what ``predict`` did before).

The model is the shipped folder configuration's network (small U-Net, width 8, depth 3,
BatchNorm, stride 4) under MAML's transductive BatchNorm, fitted to the image's own mask
(Adam, :data:`FIT_STEPS` steps on random 256-px crops) so that its map has the structure
and confidence of a trained model; an untrained network's near-uniform probabilities
would flip under any perturbation and say nothing.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

#: Adam steps of the fit to the image's mask.
FIT_STEPS = 150
#: Side of the crops the model is fitted on.
WINDOW = 256


def largest_image(root: Path) -> tuple[Path, Path]:
    """The largest ``images/*.jpg`` of a dubai-aerial folder and its mask."""
    from PIL import Image

    images = sorted(root.glob("*/images/*.jpg"))
    if not images:
        raise FileNotFoundError(f"{root}: no */images/*.jpg; give the dubai-aerial folder")
    best = max(images, key=lambda p: (np.prod(Image.open(p).size), str(p)))
    return best, best.parent.parent / "masks" / f"{best.stem}.png"


def load_largest(root: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """The largest image of a dubai-aerial folder: its path, ``(3, H, W)`` RGB and mask.

    The mask holds class indices of :data:`landcover.bench.strokes.DUBAI`; its black
    pixels (Tile 3's pixels of no class) count as unlabeled.
    """
    from PIL import Image

    from landcover.bench.strokes import DUBAI

    image_path, mask_path = largest_image(root)
    image = np.asarray(Image.open(image_path).convert("RGB")).transpose(2, 0, 1).copy()
    raw = np.asarray(Image.open(mask_path).convert("RGB")).copy()
    raw[(raw == 0).all(axis=-1)] = (155, 155, 155)  # black = unlabeled (as in Tile 3)
    return image_path, image, DUBAI.encode(raw, mask_path)


def fit_to_mask(model: Any, image: np.ndarray, mask: np.ndarray, *, steps: int,
                seed: int) -> tuple[Any, Any, Any]:  # fmt: skip
    """Fit ``model``'s trainable parameters to ``mask`` in training mode (Adam, lr 3e-3).

    ``image`` is standardised with its own per-band statistics; each step takes four
    random :data:`WINDOW`-px crops (a generator seeded with ``seed``).

    Returns:
        ``(mean, std, loss)``: the standardisation (tensors) and the loss it minimised.
    """
    import torch

    from landcover.bench.strokes import IGNORE_INDEX

    x = torch.from_numpy(image).float()
    mean, std = x.flatten(1).mean(1), x.flatten(1).std(1)
    xn = (x - mean[:, None, None]) / std[:, None, None]
    y = torch.from_numpy(mask).long()
    params = [p for p in model.parameters() if p.requires_grad]  # a frozen encoder has none
    opt = torch.optim.Adam(params, lr=3e-3)
    loss = torch.nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)
    gen = torch.Generator().manual_seed(seed)
    h, w = x.shape[-2:]
    model.train()  # batch statistics for BatchNorm models (what transductive BN uses)
    for _ in range(steps):
        ys = torch.randint(0, h - WINDOW + 1, (4,), generator=gen).tolist()
        xs = torch.randint(0, w - WINDOW + 1, (4,), generator=gen).tolist()
        xb = torch.stack([xn[:, a : a + WINDOW, b : b + WINDOW] for a, b in zip(ys, xs)])
        yb = torch.stack([y[a : a + WINDOW, b : b + WINDOW] for a, b in zip(ys, xs)])
        opt.zero_grad()
        loss(model(xb), yb).backward()
        opt.step()
    return mean, std, loss


def fit_bundle(
    image: np.ndarray, mask: np.ndarray, *, learner: str = "maml", steps: int = FIT_STEPS,
    seed: int = 0,
) -> Any:  # fmt: skip
    """A bundle of the folder configuration's network fitted to ``mask`` (Adam).

    Args:
        image: ``(3, H, W)`` RGB, both sides at least 256 px.
        mask: ``(H, W)`` class indices of :data:`landcover.bench.strokes.DUBAI`.
        learner: ``"maml"`` (transductive BatchNorm) or ``"mamlpp"`` (per-step running
            statistics, which then hold the training batches' running statistics).
        steps: Adam steps on four random 256-px crops each.
        seed: Seed of the initialisation and the crops.
    """
    import torch

    from landcover.bench.strokes import DUBAI
    from landcover.inference.bundle import ModelBundle
    from landcover.meta.registry import build_learner
    from landcover.models.factory import build_model

    torch.manual_seed(seed)
    model = build_model("small_unet", 3, DUBAI.num_classes, width=8, depth=3, norm="batch",
                        stride=4)  # fmt: skip
    mean, std, loss = fit_to_mask(model, image, mask, steps=steps, seed=seed)
    bn = "transductive" if learner == "maml" else "per_step"
    fitted = build_learner(learner, model, loss, steps=1, inner_lr=0.1, bn=bn)
    return ModelBundle.from_learner(
        fitted.eval(), bands=["red", "green", "blue"], mean=mean.tolist(), std=std.tolist(),
        classes=DUBAI, tile_size=WINDOW,
    )  # fmt: skip


def window_agreement(root: Path, out_dir: Path) -> dict[str, Any]:
    """Agreement of default windows with one whole-raster window on a real image.

    Returns:
        The image, its size, the fitted model's pixel accuracy, and for "one statistic"
        (``predict`` now) and "per-window statistics" (before) the agreement of the
        default windows' map with the whole-raster window's map and the seconds taken.
    """
    import rasterio

    from landcover.bench.strokes import DUBAI
    from landcover.inference.predict import Predictor, default_window
    from landcover.inference.predict_raster import predict_raster

    image_path, image, mask = load_largest(root)
    bundle = fit_bundle(image, mask)
    h, w = image.shape[-2:]
    whole = -(-max(h, w) // 32) * 32
    name = f"{image_path.parent.parent.name}/{image_path.name}"
    window = default_window(bundle)
    result: dict[str, Any] = {"image": name, "width": w, "height": h, "window": window,
                              "overlap": window // 4}  # fmt: skip
    for case, one in (("one statistic", True), ("per-window statistics", False)):
        predictor = Predictor.from_bundle(bundle)
        if not one:
            predictor.norm_stats = None  # each window normalised with its own statistics
        maps = {}
        for name, win, ov in (("default", window, window // 4), ("256 px", 256, 64),
                              ("whole", whole, 0)):  # fmt: skip
            out = out_dir / f"{name}-{one}.tif"
            start = time.perf_counter()
            predict_raster(predictor, image_path, out, window=win, overlap=ov, progress=False)
            result.setdefault(case, {})[f"{name}_seconds"] = round(time.perf_counter() - start, 3)
            with rasterio.open(out) as ds:
                maps[name] = ds.read(1)
        result[case]["agreement"] = float((maps["default"] == maps["whole"]).mean())
        result[case]["agreement_256"] = float((maps["256 px"] == maps["whole"]).mean())
        if one:  # how well the fitted model maps the image (class indices, in memory)
            import torch

            from landcover.inference.predict import predict_array

            pred = predict_array(predictor, torch.from_numpy(image).float(), window=whole,
                                 overlap=0).classes.numpy()  # fmt: skip
            labeled = mask < DUBAI.num_classes
            result["fit_pixel_accuracy"] = float((pred[labeled] == mask[labeled]).mean())
    return result
