import torch
from torch import nn

from landcover.meta.mann import MANN
from tests.meta.blackbox import (
    assert_label_first_seen,
    assert_offset_query_is_appended_item,
    assert_pairs_query_is_full_forward,
    small_task,
)


def _mann():
    return MANN(
        nn.Linear(5, 6), feature_dim=6, max_way=4, hidden=12, slots=8, slot_dim=5, heads=2
    ).double()


def test_sees_only_labels_of_earlier_items():
    m = _mann()
    emb = torch.randn(7, 6, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2])
    # positions <= t are unchanged, the next one sees the new label
    assert_label_first_seen(m, emb, y, lag=1, shift=1)


def test_query_branch_equals_appending_query_to_sequence():
    m = _mann()
    sx, sy = torch.randn(6, 5, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2])
    assert_offset_query_is_appended_item(m, sx, sy, torch.randn(3, 5, dtype=torch.float64))


def test_meta_gradient_flows():
    m = _mann()
    task = small_task()
    m.meta_backward([task])
    assert m.controller.weight_ih.grad.abs().sum() > 0
    assert m.key.weight.grad.abs().sum() > 0


def test_defaults_to_offset_and_pairs_query_branch_matches_full_sequence():
    assert _mann().labels == "offset"
    torch.manual_seed(0)
    m = MANN(
        nn.Linear(5, 6),
        feature_dim=6,
        max_way=4,
        hidden=12,
        slots=8,
        slot_dim=5,
        heads=2,
        labels="pairs",
    ).double()
    sx, sy = torch.randn(6, 5, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2])
    assert_pairs_query_is_full_forward(m, sx, sy, torch.randn(3, 5, dtype=torch.float64))
