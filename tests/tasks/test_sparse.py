from __future__ import annotations

import numpy as np
import pytest
import torch

from landcover.geo.classes import ClassScheme
from landcover.geo.region import in_memory_region
from landcover.tasks.region import RegionTaskSampler
from landcover.tasks.sparse import SparseLabels, labeled_fraction, sparsify

SCHEME = ClassScheme(names=("a", "b", "c"), values=(1, 2, 3))


def blocks(size: int = 64) -> torch.Tensor:
    """Three class blocks and an unlabeled corner."""
    m = torch.zeros(size, size, dtype=torch.long)
    m[:, size // 2 :] = 1
    m[size // 2 :, : size // 4] = 2
    m[:4, :4] = 255
    return m


@pytest.mark.parametrize("mode", ["strokes", "points"])
def test_sparse_labels_are_a_small_true_subset(mode: str) -> None:
    full = blocks()
    sparse = sparsify(full, SparseLabels(mode=mode), np.random.default_rng(0))
    labeled = sparse != 255
    assert torch.equal(sparse[labeled], full[labeled])  # never a wrong class
    assert set(sparse[labeled].unique().tolist()) == {0, 1, 2}  # every class gets labels
    assert 0 < labeled_fraction(sparse) < 0.15


def test_strokes_are_connected_lines_not_scattered_pixels() -> None:
    from scipy import ndimage

    full = torch.zeros(64, 64, dtype=torch.long)
    spec = SparseLabels(mode="strokes", per_class=1, length=0.5, width=3)
    sparse = sparsify(full, spec, np.random.default_rng(3))
    _, parts = ndimage.label((sparse == 0).numpy())
    assert parts == 1
    assert (sparse == 0).sum() >= 3 * 20  # a line of about length × width pixels


def test_sparsify_is_deterministic_in_the_rng_and_skips_tiny_classes() -> None:
    full = blocks()
    full[10, 10] = 2  # a class with one pixel here: left unlabeled
    a = sparsify(full, SparseLabels(), np.random.default_rng(5))
    b = sparsify(full, SparseLabels(), np.random.default_rng(5))
    assert torch.equal(a, b)
    assert a[10, 10] == 255


def test_parse_accepts_config_forms_and_rejects_bad_ones() -> None:
    assert SparseLabels.parse(None) is None and SparseLabels.parse("none") is None
    assert SparseLabels.parse("points").mode == "points"
    assert SparseLabels.parse({"mode": "strokes", "width": 5}).width == 5
    with pytest.raises(ValueError, match="sparse mode must be one of"):
        SparseLabels.parse("scribbles")
    with pytest.raises(ValueError, match="unknown sparse-label options"):
        SparseLabels.parse({"mode": "strokes", "thickness": 3})


def test_sampler_sparsifies_support_but_keeps_query_full() -> None:
    masks = torch.stack([blocks(32)] * 6)
    images = masks[:, None].float().repeat(1, 2, 1, 1)
    region = in_memory_region("r", images, masks, SCHEME, ("x", "y"))
    dense = RegionTaskSampler([region], shots=2, query=2, seed=1).task(0)
    sparse = RegionTaskSampler([region], shots=2, query=2, seed=1, sparse="strokes").task(0)
    assert torch.equal(sparse.support_x, dense.support_x)
    assert torch.equal(sparse.query_y, dense.query_y)
    kept = sparse.support_y != 255
    assert 0 < kept.float().mean() < 0.3
    assert torch.equal(sparse.support_y[kept], dense.support_y[kept])
    assert torch.equal(
        sparse.support_y, RegionTaskSampler([region], shots=2, query=2, seed=1, sparse="strokes")
        .task(0).support_y
    )  # fmt: skip


def test_datamodule_config_option_meta_trains_on_sparse_supports(tmp_path) -> None:
    from landcover.training.datamodule import RegionTaskDataModule

    synth = {"regions": 4, "tiles_per_region": 5, "tile_size": 32, "seed": 0}
    common = dict(root=str(tmp_path / "data"), options=synth, val_regions=1, test_regions=1,
                  shots=[2, 2], query=2, tile_size=32)  # fmt: skip
    dense = RegionTaskDataModule(**common)
    sparse = RegionTaskDataModule(**common, sparse_support={"mode": "strokes", "width": 3})
    a, b = dense.train_task(3), sparse.train_task(3)
    assert torch.equal(a.query_y, b.query_y) and torch.equal(a.support_x, b.support_x)
    assert labeled_fraction(b.support_y) < 0.5 * labeled_fraction(a.support_y)
    kept = b.support_y != 255
    assert torch.equal(b.support_y[kept], a.support_y[kept])
