import pytest
import torch
from torch import nn

from landcover.meta.registry import build_learner
from landcover.meta.snail import SNAIL
from landcover.tasks.task import Task
from tests.meta.blackbox import (
    assert_label_first_seen,
    assert_offset_query_is_appended_item,
    assert_pairs_query_is_full_forward,
    small_task,
)

_SIZES = {
    "feature_dim": 6,
    "max_way": 4,
    "max_length": 8,
    "attention": ((4, 3), (4, 3), (4, 3)),
    "filters": 4,
}


def _snail(labels="offset"):
    torch.manual_seed(0)
    return SNAIL(nn.Linear(5, 6), labels=labels, **_SIZES).double()


def _support():
    sx = torch.randn(7, 5, dtype=torch.float64)
    return sx, torch.tensor([0, 1, 2, 0, 1, 2, 1])


def test_defaults_to_the_paper_pairs_scheme():
    assert SNAIL(nn.Linear(5, 6), feature_dim=6).labels == "pairs"
    assert SNAIL(nn.Linear(5, 6), feature_dim=6).support_weight == 0.0
    assert _snail("offset").support_weight == 1.0


def test_invalid_labels_or_support_weight_with_pairs_raise():
    with pytest.raises(ValueError, match="labels must be one of"):
        _snail("shifted")
    with pytest.raises(ValueError, match="support_weight must be 0"):
        SNAIL(nn.Linear(5, 6), feature_dim=6, labels="pairs", support_weight=1.0)


def test_labels_option_passes_through_the_registry():
    m = build_learner("snail", nn.Linear(5, 6), None, labels="offset", **_SIZES)
    assert m.labels == "offset" and m.options["labels"] == "offset"
    assert build_learner("snail", nn.Linear(5, 6), None, **_SIZES).labels == "pairs"


# --- offset scheme (Santoro et al.) ---


def test_offset_sees_only_labels_of_earlier_items():
    m = _snail()
    emb = torch.randn(9, 6, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0])
    assert_label_first_seen(m, emb, y, lag=1, shift=2)


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


def test_offset_query_branch_equals_appending_query_to_sequence():
    m = _snail()
    sx, sy = _support()
    assert_offset_query_is_appended_item(m, sx, sy, torch.randn(3, 5, dtype=torch.float64))


# --- pairs scheme (Mishra et al.) ---


def test_pairs_support_position_sees_its_own_and_earlier_labels_only():
    m = _snail("pairs")
    emb = torch.randn(9, 6, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0])
    assert_label_first_seen(m, emb, y, lag=0, shift=2)


def test_pairs_query_branch_equals_full_causal_forward():
    m = _snail("pairs")
    sx, sy = _support()
    assert_pairs_query_is_full_forward(m, sx, sy, torch.randn(3, 5, dtype=torch.float64))


def test_pairs_query_depends_on_every_support_label():
    m = _snail("pairs")
    sx, sy = _support()
    qx = torch.randn(2, 5, dtype=torch.float64)
    ref = m.predict(m.adapt(sx, sy), qx)
    for t in range(len(sy)):
        sy2 = sy.clone()
        sy2[t] = (sy[t] + 1) % 3
        out = m.predict(m.adapt(sx, sy2), qx)
        assert not torch.allclose(out, ref), t


def test_pairs_query_never_sees_other_queries():
    m = _snail("pairs")
    sx, sy = _support()
    state = m.adapt(sx, sy)
    qx = torch.randn(4, 5, dtype=torch.float64)
    ref = m.predict(state, qx)
    others = qx.clone()
    others[1:] = torch.randn(3, 5, dtype=torch.float64)
    torch.testing.assert_close(m.predict(state, others)[0], ref[0])
    for i in range(4):
        torch.testing.assert_close(m.predict(state, qx[i : i + 1])[0], ref[i])


def test_pairs_trains_on_the_query_loss_only():
    m = _snail("pairs")
    sx, sy = _support()
    task = Task(sx, sy, torch.randn(3, 5, dtype=torch.float64), torch.tensor([0, 1, 2]))
    res = m.task_loss(task)
    assert float(res.loss.detach()) == pytest.approx(res.query_loss)


@pytest.mark.parametrize("labels", ["offset", "pairs"])
def test_meta_gradient_flows(labels):
    m = _snail(labels)
    task = small_task()
    m.meta_backward([task])
    assert all(p.grad is not None for p in m.layers.parameters())
