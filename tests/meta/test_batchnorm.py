"""BatchNorm policies: no statistics shared between tasks or leaked into the meta-model."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
from torch import nn

from landcover.meta.functional import safe_key
from landcover.meta.registry import build_learner
from tests.meta.toy import ToySeg, seg_task

CE = nn.CrossEntropyLoss(ignore_index=255)


def _bn_buffers(model):
    return {n: b.clone() for n, b in model.named_buffers()}


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def test_transductive_never_touches_running_stats_and_uses_batch_stats():
    model = ToySeg(bn=True)
    before = _bn_buffers(model)
    learner = build_learner("maml", model, CE, inner_lr=0.1, steps=2, bn="transductive")
    task = seg_task()
    learner.task_loss(task).loss.backward()
    learner.eval()
    state = learner.adapt(task.support_x, task.support_y)
    out = learner.predict(state, task.query_x)
    _assert_same(_bn_buffers(model), before)
    reference = copy.deepcopy(model).train()  # batch statistics, even in eval mode
    with torch.no_grad():
        for n, p in reference.named_parameters():
            if n in state.params:
                p.copy_(state.params[n])
        expected = reference(task.query_x)
    torch.testing.assert_close(out, expected)


def test_per_step_stats_live_in_the_learner_and_update_only_in_training():
    model = ToySeg(bn=True)
    model_buffers = _bn_buffers(model)
    learner = build_learner("mamlpp", model, CE, inner_lr=0.1, steps=2)
    assert learner.bn.policy == "per_step"
    key = safe_key("body.norm")
    stats = lambda: {n: b.clone() for n, b in learner.bn.named_buffers()}  # noqa: E731
    start = stats()
    learner.task_loss(seg_task(0)).loss.backward()
    trained = stats()
    mean = trained[f"mean__{key}"]
    assert not torch.allclose(mean[0], start[f"mean__{key}"][0])  # step-0 entry moved
    assert not torch.allclose(mean[2], start[f"mean__{key}"][2])  # final entry moved
    _assert_same(_bn_buffers(model), model_buffers)  # the meta-model's own BN untouched
    # per-step affine parameters are meta-learned, not adapted (values: see the FD test)
    assert "body.norm.weight" not in learner.adapt_names
    # eval mode: nothing moves, tasks do not see each other
    learner.eval()
    a, b = seg_task(1), seg_task(2)
    out_b = learner.predict(learner.adapt(b.support_x, b.support_y), b.query_x)
    learner.task_loss(a, training=False)
    learner.adapt(a.support_x, a.support_y)
    out_b_again = learner.predict(learner.adapt(b.support_x, b.support_y), b.query_x)
    torch.testing.assert_close(out_b, out_b_again, rtol=0, atol=0)
    _assert_same(stats(), trained)


def test_per_step_affine_gradients_match_finite_differences():
    """Every entry of every per-step affine parameter, against central differences (float64).

    Training-mode forwards normalise with batch statistics, so the loss does not depend on
    the running statistics that each evaluation updates.
    """
    model = ToySeg(bn=True).double()
    learner = build_learner(
        "mamlpp", model, CE, inner_lr=0.3, steps=2, first_order_epochs=0
    ).double()
    task = seg_task(0, dtype=torch.float64)
    with torch.no_grad():  # distinct per-step values, so a mixed-up entry would show
        for p in [*learner.bn.weight.values(), *learner.bn.bias.values()]:
            p.add_(
                0.1
                * torch.randn(p.shape, dtype=p.dtype, generator=torch.Generator().manual_seed(3))
            )
    learner.task_loss(task).loss.backward()
    eps = 1e-6
    checked = 0
    for table in (learner.bn.weight, learner.bn.bias):
        for key, p in table.items():
            assert p.shape[0] == 3  # steps + 1 entries
            fd = torch.zeros_like(p)
            for idx in itertools.product(*(range(d) for d in p.shape)):
                with torch.no_grad():
                    p[idx] += eps
                    up = float(learner.task_loss(task).loss)
                    p[idx] -= 2 * eps
                    down = float(learner.task_loss(task).loss)
                    p[idx] += eps
                fd[idx] = (up - down) / (2 * eps)
            torch.testing.assert_close(p.grad, fd, rtol=1e-5, atol=1e-8, msg=key)
            assert (p.grad[:, :].abs().sum(dim=1) > 0).all(), key  # every step entry is used
            checked += p.numel()
    assert checked == 2 * 2 * 3 * 4  # two BN layers, weight and bias, 3 entries, 4 channels


def test_per_step_eval_uses_the_final_entry_statistics_and_affine():
    model = ToySeg(bn=True)
    learner = build_learner("mamlpp", model, CE, inner_lr=0.1, steps=2)
    learner.task_loss(seg_task(0)).loss.backward()
    learner.eval()
    task = seg_task(3)
    state = learner.adapt(task.support_x, task.support_y, steps=3)  # more steps than trained
    out = learner.predict(state, task.query_x)
    reference = copy.deepcopy(model).eval()
    with torch.no_grad():
        for n, p in reference.named_parameters():
            if n in state.params:
                p.copy_(state.params[n])
        for name in ("body.norm", "head.decoder.1"):
            key, layer = safe_key(name), reference.get_submodule(name)
            layer.running_mean.copy_(getattr(learner.bn, f"mean__{key}")[2])
            layer.running_var.copy_(getattr(learner.bn, f"var__{key}")[2])
            layer.weight.copy_(learner.bn.weight[key][2])
            layer.bias.copy_(learner.bn.bias[key][2])
        expected = reference(task.query_x)
    torch.testing.assert_close(out, expected)


def test_policy_errors():
    with pytest.raises(ValueError, match="BatchNorm"):
        build_learner("maml", ToySeg(bn=True), CE, bn="none")
    with pytest.raises(ValueError, match="vmap"):
        build_learner("maml", ToySeg(bn=True), CE, vmap=True)
    with pytest.raises(ValueError, match="choose one of"):
        build_learner("maml", ToySeg(bn=True), CE, bn="batch")
    assert build_learner("maml", ToySeg(bn=False), CE).bn.policy == "none"
