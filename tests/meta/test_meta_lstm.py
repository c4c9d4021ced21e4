from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from landcover.meta.meta_lstm import MetaLSTM, preprocess
from landcover.tasks.task import Task


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1)).double()


def _data(n: int = 6):
    x = torch.randn(n, 2, dtype=torch.float64)
    return x, (x[:, :1] * 2 - x[:, 1:]).sin()


def _pass_through(learner: MetaLSTM) -> None:
    with torch.no_grad():
        learner.w_input.zero_()
        learner.w_forget.zero_()
        learner.b_forget.fill_(100.0)  # sigmoid(100) == 1.0 exactly in float64


def test_preprocess_matches_andrychowicz() -> None:
    x = torch.tensor([2.0, -1e-3, 1e-6, -1e-6, 0.0], dtype=torch.float64)
    out = preprocess(x, p=10.0)
    assert torch.allclose(out[0], torch.tensor([math.log(2.0) / 10, 1.0], dtype=torch.float64))
    assert torch.allclose(out[1], torch.tensor([math.log(1e-3) / 10, -1.0], dtype=torch.float64))
    assert torch.allclose(out[2], torch.tensor([-1.0, math.exp(10) * 1e-6], dtype=torch.float64))
    assert torch.allclose(out[3], torch.tensor([-1.0, -math.exp(10) * 1e-6], dtype=torch.float64))
    assert torch.equal(out[4], torch.tensor([-1.0, 0.0], dtype=torch.float64))


def test_pass_through_gates_are_plain_gradient_descent() -> None:
    model = _mlp()
    learner = MetaLSTM(model, nn.MSELoss(), steps=4, inner_lr=0.07).double()
    _pass_through(learner)
    x, y = _data()
    state = learner.adapt(x, y)
    rate = torch.sigmoid(learner.b_input).detach()
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    for _ in range(4):
        p = {n: v.requires_grad_() for n, v in params.items()}
        loss = nn.functional.mse_loss(torch.func.functional_call(model, p, (x,)), y)
        grads = torch.autograd.grad(loss, list(p.values()))
        params = {n: v.detach() - rate * g for (n, v), g in zip(p.items(), grads)}
    for n in params:
        assert torch.allclose(state.params[n], params[n], rtol=0, atol=1e-14), n
    # And the rule really moved the parameters (the test is not vacuous).
    assert not torch.allclose(state.params["0.weight"], model[0].weight)


def test_meta_gradient_matches_finite_differences_second_order() -> None:
    model = _mlp()
    learner = MetaLSTM(model, nn.MSELoss(), steps=2, hidden=3, second_order=True).double()
    with torch.no_grad():
        learner.w_input.normal_(0, 0.3)
        learner.w_forget.normal_(0, 0.3)
        learner.b_forget.fill_(1.0)
        learner.b_input.fill_(-1.0)
    x, y = _data()
    task = Task(x, y, *_data(5))
    learner.task_loss(task).loss.backward()
    eps = 1e-6
    for p in (learner.b_input, learner.w_forget, learner.reader.weight_ih):
        idx = (0,) * p.dim()
        with torch.no_grad():
            p[idx] += eps
            up = learner.task_loss(task, training=False).loss
            p[idx] -= 2 * eps
            down = learner.task_loss(task, training=False).loss
            p[idx] += eps
        fd = float((up - down) / (2 * eps))
        assert p.grad[idx].item() == pytest.approx(fd, rel=1e-5, abs=1e-9)


def test_first_order_meta_gradient_reaches_every_part() -> None:
    learner = MetaLSTM(nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1)), steps=3)
    x = torch.randn(5, 2)
    task = Task(x, x.sum(1, keepdim=True), torch.randn(7, 2), torch.randn(7, 1))
    result = learner.task_loss(task)
    result.loss.backward()
    for name, p in learner.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert 0 < result.metrics["input_gate"] < 1 and 0 < result.metrics["forget_gate"] < 1
    state = learner.adapt(task.support_x, task.support_y, steps=6)
    assert state.step == 6 and all(not v.requires_grad for v in state.params.values())


def test_rejects_bad_options() -> None:
    with pytest.raises(ValueError, match="inner_lr"):
        MetaLSTM(nn.Linear(2, 1), inner_lr=1.5)
    with pytest.raises(ValueError, match="bn="):
        MetaLSTM(nn.Linear(2, 1), bn="per_step")


def test_vmap_batch_equals_the_task_loop() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1, 6), nn.ReLU(), nn.Linear(6, 1)).double()
    learner = MetaLSTM(model, nn.MSELoss(), steps=3, hidden=4, vmap=True).double()
    sx, qx = torch.randn(4, 5, 1, dtype=torch.float64), torch.randn(4, 7, 1, dtype=torch.float64)
    sy, qy = sx.sin(), qx.sin()
    loss, _ = learner.batched_meta_loss(sx, sy, qx, qy)
    grads = torch.autograd.grad(loss, list(learner.parameters()))
    tasks = [Task(sx[i], sy[i], qx[i], qy[i]) for i in range(4)]
    ref = learner.meta_loss(tasks)
    ref_grads = torch.autograd.grad(ref, list(learner.parameters()))
    assert torch.allclose(loss, ref, atol=1e-12)
    for g, r in zip(grads, ref_grads):
        assert torch.allclose(g, r, atol=1e-10)
    pred = learner.batched_predict(sx, sy, qx, steps=2)
    state = learner.adapt(sx[1], sy[1], steps=2)
    assert torch.allclose(pred[1], learner.predict(state, qx[1]), atol=1e-12)


def test_written_out_lstm_step_equals_torch() -> None:
    from landcover.meta.meta_lstm import lstm_step

    cell = nn.LSTMCell(4, 3).double()
    x, h, c = (torch.randn(5, k, dtype=torch.float64) for k in (4, 3, 3))
    ref = cell(x, (h, c))
    out = lstm_step(cell, x, (h, c))
    assert torch.allclose(out[0], ref[0], atol=1e-14) and torch.allclose(out[1], ref[1], atol=1e-14)


def test_registered_under_its_name() -> None:
    from landcover.meta.registry import build_learner

    learner = build_learner("meta_lstm", _mlp(), None)
    assert type(learner) is MetaLSTM and learner.name == "meta_lstm"
