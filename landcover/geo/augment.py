"""Joint image/mask augmentation with albumentations.

Presets (by name, so that YAML configs and model bundles can refer to them):

* ``"none"``: no augmentation;
* ``"flips"``: horizontal and vertical flips and 90° rotations (the dihedral group D4; exact
  for any number of bands, masks move with the image);
* ``"affine"``: ``"flips"`` plus small scale/rotation (masks resampled nearest, uncovered
  pixels become the ignore index) and mild Gaussian noise on the normalised image.

Albumentations works on ``(H, W, C)`` arrays; :func:`apply_joint` converts from and to the
package's ``(C, H, W)`` tensors. Randomness is seeded per call, so a task sampled with a given
seed is augmented identically every time (Buslaev et al., "Albumentations: fast and flexible
image augmentations", Information 2020).
"""

from __future__ import annotations

import albumentations as A
import numpy as np
import torch
from torch import Tensor

from landcover.geo.classes import IGNORE_INDEX

PRESETS = ("none", "flips", "affine")


def build_augmentation(name: str = "flips", ignore_index: int = IGNORE_INDEX) -> A.Compose | None:
    """Build a preset augmentation pipeline (``None`` for ``"none"``).

    Raises:
        KeyError: ``name`` is not a preset.
    """
    if name == "none":
        return None
    d4 = [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5), A.RandomRotate90(p=0.5)]
    if name == "flips":
        return A.Compose(d4)
    if name == "affine":
        return A.Compose(
            [
                *d4,
                A.Affine(scale=(0.9, 1.1), rotate=(-15, 15), fill=0, fill_mask=ignore_index, p=0.5),
                A.GaussNoise(std_range=(0.0, 0.05), p=0.3),
            ]
        )
    raise KeyError(f"unknown augmentation {name!r}; choose one of {', '.join(PRESETS)}")


def apply_joint(
    transform: A.Compose, image: Tensor, mask: Tensor, seed: int
) -> tuple[Tensor, Tensor]:
    """Apply ``transform`` jointly to a ``(C, H, W)`` image and its ``(H, W)`` mask.

    Args:
        transform: Albumentations pipeline.
        image: Float image.
        mask: Integer class mask.
        seed: Seed of this call's random draws.

    Returns:
        The augmented image (float32) and mask (int64), same layouts as given.
    """
    transform.set_random_seed(int(seed) % (2**32))
    out = transform(
        image=np.ascontiguousarray(image.permute(1, 2, 0).numpy(), dtype=np.float32),
        mask=mask.numpy().astype(np.int32),
    )
    img = torch.from_numpy(np.ascontiguousarray(out["image"])).permute(2, 0, 1).contiguous()
    return img.float(), torch.from_numpy(np.ascontiguousarray(out["mask"])).long()
