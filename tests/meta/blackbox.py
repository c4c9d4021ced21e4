"""Shared task and checks of the black-box learner tests (CNP, MANN, SNAIL)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from landcover.meta.sequence import SequenceLearner
from landcover.tasks.task import Task


def small_task() -> Task:
    """A 3-way task of 5-feature float64 inputs: 2 shots per class, 1 query per class."""
    return Task(
        torch.randn(6, 5, dtype=torch.float64),
        torch.tensor([0, 1, 2] * 2),
        torch.randn(3, 5, dtype=torch.float64),
        torch.tensor([0, 1, 2]),
    )


def assert_label_first_seen(
    m: SequenceLearner, emb: torch.Tensor, y: torch.Tensor, *, lag: int, shift: int
) -> None:
    """Changing label ``t`` leaves the positions before ``t + lag`` unchanged and changes
    position ``t + lag`` (``lag`` 1 with ``labels="offset"``, 0 with ``"pairs"``).

    Args:
        m: The learner.
        emb: Support embeddings ``(S, D)``.
        y: Support labels ``(S,)``.
        lag: Positions after its own at which a label is first seen.
        shift: Each changed label is ``(y[t] + shift) % max_way``.
    """
    ref = m.sequence_logits(emb, y)
    for t in range(len(y)):
        y2 = y.clone()
        y2[t] = (y[t] + shift) % m.max_way
        out = m.sequence_logits(emb, y2)
        torch.testing.assert_close(out[: t + lag], ref[: t + lag])
        if t + lag < len(y):
            assert not torch.allclose(out[t + lag], ref[t + lag]), t


def assert_offset_query_is_appended_item(
    m: SequenceLearner, sx: torch.Tensor, sy: torch.Tensor, qx: torch.Tensor
) -> None:
    """With ``labels="offset"``, each query's logits equal those of the last position of
    the support sequence with that query appended (its own label never enters)."""
    got = m.predict(m.adapt(sx, sy), qx)
    n_way = int(sy.max()) + 1
    for i in range(len(qx)):
        seq = m.sequence_logits(
            m.embed(torch.cat([sx, qx[i : i + 1]])), torch.cat([sy, torch.tensor([0])])
        )
        torch.testing.assert_close(got[i], seq[-1, :n_way])


def assert_pairs_query_is_full_forward(
    m: SequenceLearner, sx: torch.Tensor, sy: torch.Tensor, qx: torch.Tensor
) -> None:
    """With ``labels="pairs"``, each query's logits equal a full causal forward of the
    labelled support pairs followed by that query with a zero label."""
    got = m.predict(m.adapt(sx, sy), qx)
    n_way = int(sy.max()) + 1
    support = torch.cat([m.embed(sx), F.one_hot(sy, m.max_way).double()], dim=1)
    for i in range(len(qx)):
        query = torch.cat(
            [m.embed(qx[i : i + 1]), torch.zeros(1, m.max_way, dtype=torch.float64)], 1
        )
        seq = m.encode_support(torch.cat([support, query]))[1]
        torch.testing.assert_close(got[i], seq[-1, :n_way])
