"""AffineJitter: identity, known scale and shift, independent draws, bad parameters."""

from __future__ import annotations

import pytest
import torch

from landcover.tasks.omniglot_augment import AffineJitter


def _blob(size: int = 28, radius: float = 3.0) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    c = (size - 1) / 2
    return ((yy - c) ** 2 + (xx - c) ** 2 <= radius**2).float()[None, None]


def _centre_of_mass(img: torch.Tensor) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(img.shape[-2]), torch.arange(img.shape[-1]), indexing="ij")
    m = img[0, 0]
    return torch.stack([(m * yy).sum(), (m * xx).sum()]) / m.sum()


def test_zero_jitter_is_the_identity():
    images = torch.rand(5, 1, 28, 28)
    same = AffineJitter(degrees=0, translate=0, scale=(1, 1), shear=0)(images)
    torch.testing.assert_close(same, images, rtol=0, atol=1e-5)


def test_scale_two_quadruples_the_ink_of_a_centred_blob():
    blob = _blob()
    out = AffineJitter(degrees=0, translate=0, scale=(2, 2), shear=0)(blob)
    assert float(out.sum()) == pytest.approx(4 * float(blob.sum()), rel=0.1)
    torch.testing.assert_close(_centre_of_mass(out), _centre_of_mass(blob), atol=0.05, rtol=0)


def test_shift_moves_the_centre_of_mass_by_the_drawn_fraction():
    jitter = AffineJitter(degrees=0, translate=0.2, scale=(1, 1), shear=0)
    blob = _blob().repeat(4, 1, 1, 1)
    theta = jitter.matrices(4, torch.Generator().manual_seed(3))
    out = jitter(blob, torch.Generator().manual_seed(3))
    for i in range(4):
        # grid offset -2 * shift in [-1, 1] coordinates: content moves by shift * 28 px
        expected = -theta[i, :, 2].flip(0) / 2 * 28
        moved = _centre_of_mass(out[i : i + 1]) - _centre_of_mass(blob[i : i + 1])
        assert float(theta[i, :, 2].abs().max()) > 0.01
        torch.testing.assert_close(moved, expected, atol=0.3, rtol=0)


def test_each_image_gets_its_own_transform_and_a_seed_reproduces_it():
    images = _blob(radius=6).repeat(3, 1, 1, 1)
    a = AffineJitter()(images, torch.Generator().manual_seed(0))
    b = AffineJitter()(images, torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a[0], a[1]) and not torch.allclose(a[1], a[2])


@pytest.mark.parametrize(
    "kwargs", [{"degrees": -1}, {"translate": 0.6}, {"scale": (1.2, 1.0)}, {"shear": -2}]
)
def test_bad_parameters_are_refused(kwargs):
    with pytest.raises(ValueError, match="AffineJitter"):
        AffineJitter(**kwargs)


def test_images_must_be_a_batch():
    with pytest.raises(ValueError, match=r"\(n, C, H, W\)"):
        AffineJitter()(torch.zeros(28, 28))
