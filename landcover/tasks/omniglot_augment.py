"""Random affine jitter of character images for meta-training on few alphabets.

With 203 training characters (the two small background sets minus the held-out
alphabets) a Conv-4 embedding fits the training classes (97% 20-way training accuracy)
long before it generalises to new alphabets (85% 20-way 1-shot). Small random affine
transforms of every training image, drawn independently per image and per episode, are
the usual remedy for handwritten characters (Lake et al. 2015 draw strokes with this kind
of jitter; Santoro et al. 2016 and Koch et al. 2015 augment Omniglot with small
rotations, shifts and scalings). They are applied to the episode's images only at
training time; test episodes are never augmented.

Implemented with :func:`torch.nn.functional.affine_grid` / ``grid_sample`` on the whole
batch at once (one matrix per image), which costs a fraction of the Conv-4 step: a
per-image library transform (albumentations, torchvision's ``RandomAffine`` draws one
transform per call) would loop over the 100-400 images of an episode in Python.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class AffineJitter:
    """Independent random affine transform of each image of a batch.

    Attributes:
        degrees: Rotation drawn from ``U[-degrees, degrees]``.
        translate: Shift drawn per axis from ``U[-translate, translate]`` as a fraction of
            the image size.
        scale: Isotropic scale drawn from ``U[scale[0], scale[1]]``.
        shear: Horizontal shear angle drawn from ``U[-shear, shear]`` degrees.
    """

    degrees: float = 10.0
    translate: float = 0.1
    scale: tuple[float, float] = (0.9, 1.1)
    shear: float = 10.0

    def __post_init__(self) -> None:
        if self.degrees < 0 or self.shear < 0 or not 0 <= self.translate < 0.5:
            raise ValueError(
                "AffineJitter needs degrees >= 0, shear >= 0 and 0 <= translate < 0.5; "
                f"got degrees={self.degrees}, shear={self.shear}, translate={self.translate}"
            )
        if not 0 < self.scale[0] <= self.scale[1]:
            raise ValueError(f"AffineJitter scale must be 0 < low <= high; got {self.scale}")

    def matrices(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``(n, 2, 3)`` sampling matrices for :func:`~torch.nn.functional.affine_grid`."""

        def uniform(low: float, high: float) -> Tensor:
            return low + (high - low) * torch.rand(n, generator=generator, dtype=torch.float64)

        angle = uniform(-self.degrees, self.degrees) * math.pi / 180
        shear = uniform(-self.shear, self.shear) * math.pi / 180
        scale = uniform(*self.scale)
        shift = torch.stack(
            [uniform(-self.translate, self.translate), uniform(-self.translate, self.translate)], 1
        )
        cos, sin = torch.cos(angle), torch.sin(angle)
        # forward map: rotate @ shear, scaled; the grid samples the inverse (output -> input)
        forward = torch.zeros(n, 2, 2, dtype=torch.float64)
        forward[:, 0, 0], forward[:, 0, 1] = cos, cos * torch.tan(shear) - sin
        forward[:, 1, 0], forward[:, 1, 1] = sin, sin * torch.tan(shear) + cos
        forward = forward * scale[:, None, None]
        inverse = torch.linalg.inv(forward)
        offset = -(inverse @ (2 * shift)[:, :, None])  # translate in [-1, 1] coordinates
        return torch.cat([inverse, offset], dim=2).float()

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Jittered copy of ``images`` ``(n, C, H, W)`` (background 0 fills the borders)."""
        if images.ndim != 4:
            raise ValueError(f"AffineJitter expects (n, C, H, W) images; got {tuple(images.shape)}")
        theta = self.matrices(len(images), generator).to(images.device, images.dtype)
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        return F.grid_sample(
            images, grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )
