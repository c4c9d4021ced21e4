import torch
from torch import nn

from landcover.meta.cnp import CNP
from tests.meta.blackbox import small_task


def _cnp():
    return CNP(nn.Linear(5, 8), feature_dim=8, max_way=6, hidden=16).double()


def test_invariant_to_support_order():
    cnp = _cnp()
    sx, sy = torch.randn(10, 5, dtype=torch.float64), torch.tensor([0, 1, 2, 3, 4] * 2)
    qx = torch.randn(4, 5, dtype=torch.float64)
    ref = cnp.predict(cnp.adapt(sx, sy), qx)
    for seed in range(3):
        perm = torch.randperm(10, generator=torch.Generator().manual_seed(seed))
        torch.testing.assert_close(cnp.predict(cnp.adapt(sx[perm], sy[perm]), qx), ref)


def test_depends_on_support_labels_and_shapes():
    cnp = _cnp()
    sx, sy = torch.randn(6, 5, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2])
    qx = torch.randn(4, 5, dtype=torch.float64)
    a = cnp.predict(cnp.adapt(sx, sy), qx)
    b = cnp.predict(cnp.adapt(sx, torch.tensor([1, 0, 2, 1, 0, 2])), qx)
    assert a.shape == (4, 3)
    # the labels are part of the encoded pairs: relabelling the support changes the output
    assert not torch.allclose(a, b)


def test_meta_gradient_and_too_many_classes():
    cnp = _cnp()
    task = small_task()
    cnp.meta_backward([task])
    assert all(p.grad is not None for p in cnp.parameters())
    try:
        cnp.adapt(torch.randn(8, 5, dtype=torch.float64), torch.arange(8))
    except ValueError as exc:
        assert "at most 6" in str(exc)
    else:
        raise AssertionError("expected ValueError")
