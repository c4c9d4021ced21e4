import torch
from torch import nn

from landcover.meta.snail import SNAIL
from landcover.tasks.task import Task


def _snail():
    return SNAIL(
        nn.Linear(5, 6),
        feature_dim=6,
        max_way=4,
        max_length=8,
        attention=((4, 3), (4, 3), (4, 3)),
        filters=4,
    ).double()


def test_sees_only_labels_of_earlier_items():
    m = _snail()
    emb = torch.randn(9, 6, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0])
    ref = m.sequence_logits(emb, y)
    for t in range(9):
        y2 = y.clone()
        y2[t] = (y[t] + 2) % 4
        out = m.sequence_logits(emb, y2)
        torch.testing.assert_close(out[: t + 1], ref[: t + 1])
        if t + 1 < 9:
            assert not torch.allclose(out[t + 1 :], ref[t + 1 :])


def test_inputs_are_causal_too():
    m = _snail()
    emb = torch.randn(6, 6, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    ref = m.sequence_logits(emb, y)
    emb2 = emb.clone()
    emb2[4] += 1.0
    out = m.sequence_logits(emb2, y)
    torch.testing.assert_close(out[:4], ref[:4])
    assert not torch.allclose(out[4], ref[4])


def test_query_branch_equals_appending_query_to_sequence():
    m = _snail()
    sx, sy = torch.randn(7, 5, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2, 1])
    qx = torch.randn(3, 5, dtype=torch.float64)
    got = m.predict(m.adapt(sx, sy), qx)
    for i in range(3):
        seq = m.sequence_logits(
            m.embed(torch.cat([sx, qx[i : i + 1]])), torch.cat([sy, torch.tensor([0])])
        )
        torch.testing.assert_close(got[i], seq[-1, :3])


def test_meta_gradient_flows():
    m = _snail()
    task = Task(
        torch.randn(6, 5, dtype=torch.float64),
        torch.tensor([0, 1, 2] * 2),
        torch.randn(3, 5, dtype=torch.float64),
        torch.tensor([0, 1, 2]),
    )
    m.meta_backward([task])
    assert all(p.grad is not None for p in m.layers.parameters())
