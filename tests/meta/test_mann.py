import torch
from torch import nn

from landcover.meta.mann import MANN
from landcover.tasks.task import Task


def _mann():
    return MANN(
        nn.Linear(5, 6), feature_dim=6, max_way=4, hidden=12, slots=8, slot_dim=5, heads=2
    ).double()


def test_sees_only_labels_of_earlier_items():
    m = _mann()
    emb = torch.randn(7, 6, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2])
    ref = m.sequence_logits(emb, y)
    for t in range(7):
        y2 = y.clone()
        y2[t] = (y[t] + 1) % 4
        out = m.sequence_logits(emb, y2)
        # positions <= t are unchanged, the next one sees the new label
        torch.testing.assert_close(out[: t + 1], ref[: t + 1])
        if t + 1 < 7:
            assert not torch.allclose(out[t + 1], ref[t + 1])


def test_query_branch_equals_appending_query_to_sequence():
    m = _mann()
    sx, sy = torch.randn(6, 5, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2])
    qx = torch.randn(3, 5, dtype=torch.float64)
    got = m.predict(m.adapt(sx, sy), qx)
    for i in range(3):
        seq = m.sequence_logits(
            m.embed(torch.cat([sx, qx[i : i + 1]])), torch.cat([sy, torch.tensor([0])])
        )
        torch.testing.assert_close(got[i], seq[-1, :3])


def test_meta_gradient_flows():
    m = _mann()
    task = Task(
        torch.randn(6, 5, dtype=torch.float64),
        torch.tensor([0, 1, 2] * 2),
        torch.randn(3, 5, dtype=torch.float64),
        torch.tensor([0, 1, 2]),
    )
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
    qx = torch.randn(3, 5, dtype=torch.float64)
    got = m.predict(m.adapt(sx, sy), qx)
    support = torch.cat([m.embed(sx), torch.nn.functional.one_hot(sy, 4).double()], dim=1)
    for i in range(3):
        query = torch.cat([m.embed(qx[i : i + 1]), torch.zeros(1, 4, dtype=torch.float64)], 1)
        seq = m.encode_support(torch.cat([support, query]))[1]
        torch.testing.assert_close(got[i], seq[-1, :3])
