"""Tiny, untrained model bundles for tests, smoke runs and the service's examples.

They hold a real small U-Net and a real learner of :mod:`landcover.meta`, so every code
path (save, load, adapt, predict) runs for real, in well under a second on a CPU.
"""

from __future__ import annotations

from typing import Any

import torch

from landcover.geo.classes import ClassScheme
from landcover.inference.bundle import ModelBundle
from landcover.meta.registry import build_learner
from landcover.models.factory import build_model


def tiny_bundle(
    bands: int = 3,
    classes: int = 3,
    *,
    learner: str = "maml",
    learner_options: dict[str, Any] | None = None,
    arch: str = "small_unet",
    model_options: dict[str, Any] | None = None,
    tile_size: int = 32,
    mean: float | list[float] = 0.0,
    std: float | list[float] = 1.0,
    seed: int = 0,
) -> ModelBundle:
    """An untrained bundle with a ~6k-parameter small U-Net.

    Args:
        bands: Input bands (named ``b1..bN``).
        classes: Classes (named ``class0..``, values ``1..``, default palette).
        learner: Registry name of the learner.
        learner_options: Learner options (default: 2 steps, inner rate 0.1 for MAML-like).
        arch: Architecture.
        model_options: Architecture options (default: width 4, depth 2, GroupNorm).
        tile_size: Training tile size recorded in the bundle.
        mean: Normalisation mean (one value for all bands, or one per band).
        std: Normalisation std.
        seed: Seed of the random initialisation.
    """
    torch.manual_seed(seed)
    opts = {"width": 4, "depth": 2, "norm": "group"} if model_options is None else model_options
    model = build_model(arch, bands, classes, **opts)
    if learner_options is None:
        learner_options = {"steps": 2, "inner_lr": 0.1} if learner in {"maml", "fomaml"} else {}
    lrn = build_learner(
        learner, model, torch.nn.CrossEntropyLoss(ignore_index=255), **learner_options
    )
    scheme = ClassScheme(names=tuple(f"class{i}" for i in range(classes)),
                         values=tuple(range(1, classes + 1)))  # fmt: skip
    means = [float(mean)] * bands if isinstance(mean, int | float) else list(mean)
    stds = [float(std)] * bands if isinstance(std, int | float) else list(std)
    return ModelBundle.from_learner(
        lrn,
        bands=[f"b{i + 1}" for i in range(bands)],
        mean=means,
        std=stds,
        classes=scheme,
        tile_size=tile_size,
        info={"note": "untrained test bundle"},
    )


def brightest_band_tiles(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` 3-band 32-px tiles whose class (0..2) is the brightest band: learnable per pixel.

    Returns:
        ``(images (n, 3, 32, 32), masks (n, 32, 32))``.
    """
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n, 32, 32), generator=g)
    x = torch.randn(n, 3, 32, 32, generator=g) * 0.3
    x.scatter_add_(1, y[:, None], torch.full((n, 1, 32, 32), 2.0))
    return x, y


def fit_brightest_band(model: torch.nn.Module, steps: int = 30) -> torch.nn.Module:
    """Train ``model`` (3 bands, 3 classes) in place to segment :func:`brightest_band_tiles`."""
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    x, y = brightest_band_tiles(4, seed=1)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model
