from __future__ import annotations

import pytest
import torch
from torch import nn

from landcover.meta.bias_transform import BiasTransformMAML, add_bias_transform


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(1, 6), nn.ReLU(), nn.Linear(6, 1)).double()


def test_linear_equals_concatenated_input() -> None:
    model = add_bias_transform(_mlp(), dim=3)
    layer = model[0]
    x = torch.randn(5, 1, dtype=torch.float64)
    ref = nn.Linear(4, 6).double()
    with torch.no_grad():
        ref.weight.copy_(torch.cat([layer.weight, layer.bt_weight], 1))
        ref.bias.copy_(layer.bias)
    z = layer.bt_vector.expand(5, 3)
    assert torch.allclose(layer(x), ref(torch.cat([x, z], 1)), atol=1e-14)


def test_conv_equals_concatenated_constant_channels() -> None:
    conv = nn.Conv2d(2, 4, 3).double()  # no padding: no border effect
    model = add_bias_transform(nn.Sequential(conv), dim=2, init=0.3)
    layer = model[0]
    x = torch.randn(2, 2, 7, 7, dtype=torch.float64)
    ref = nn.Conv2d(4, 4, 3).double()
    with torch.no_grad():
        extra = layer.bt_weight[:, :, None, None].expand(4, 2, 3, 3) / 9.0
        ref.weight.copy_(torch.cat([layer.weight, extra], 1))
        ref.bias.copy_(layer.bias)
    z = layer.bt_vector[None, :, None, None].expand(2, 2, 7, 7)
    assert torch.allclose(layer(x), ref(torch.cat([x, z], 1)), atol=1e-12)


def test_adds_exactly_its_parameters_to_the_inner_loop() -> None:
    base = _mlp()
    names = [n for n, _ in base.named_parameters()]
    learner = BiasTransformMAML(base, nn.MSELoss(), bias_dim=4, inner_lr=0.1, steps=1)
    assert learner.bias_transform_names == ["0.bt_vector", "0.bt_weight"]
    assert set(learner.adapt_names) == set(names) | {"0.bt_vector", "0.bt_weight"}
    assert [n for n, _ in base.named_parameters()] == names  # the caller's model is untouched
    head_only = BiasTransformMAML(_mlp(), nn.MSELoss(), bias_dim=4, adapt="2")
    assert head_only.adapt_names == ["0.bt_vector", "0.bt_weight", "2.weight", "2.bias"]


def test_one_inner_step_moves_the_transformation_by_its_gradient() -> None:
    learner = BiasTransformMAML(_mlp(), nn.MSELoss(), bias_dim=4, inner_lr=0.1, steps=1, adapt="2")
    x = torch.linspace(-2, 2, 8, dtype=torch.float64)[:, None]
    y = x.sin()
    state = learner.adapt(x, y)
    params = dict(learner.model.named_parameters())
    loss = nn.functional.mse_loss(learner.model(x), y)
    grads = dict(zip(params, torch.autograd.grad(loss, list(params.values()))))
    assert set(state.params) == set(learner.adapt_names)
    for n in learner.adapt_names:
        assert torch.allclose(state.params[n], params[n] - 0.1 * grads[n], atol=1e-14), n
        assert grads[n].abs().sum() > 0


def test_meta_gradient_reaches_the_transformation() -> None:
    from landcover.tasks.task import Task

    learner = BiasTransformMAML(_mlp(), nn.MSELoss(), bias_dim=2, inner_lr=0.05, steps=2)
    x = torch.randn(6, 1, dtype=torch.float64)
    task = Task(
        x, x.cos(), torch.randn(6, 1, dtype=torch.float64), torch.randn(6, 1, dtype=torch.float64)
    )
    learner.task_loss(task).loss.backward()
    layer = learner.model[0]
    assert layer.bt_vector.grad.abs().sum() > 0 and layer.bt_weight.grad.abs().sum() > 0


def test_bad_options() -> None:
    with pytest.raises(ValueError, match="dim >= 1"):
        add_bias_transform(_mlp(), dim=0)
    with pytest.raises(ValueError, match="choose one of"):
        add_bias_transform(_mlp(), layer="1")
    with pytest.raises(ValueError, match="none"):
        add_bias_transform(nn.Sequential(nn.ReLU()))


def test_registered_under_its_name() -> None:
    from landcover.meta.registry import build_learner

    learner = build_learner("bias_transform", _mlp(), None)
    assert type(learner) is BiasTransformMAML and learner.name == "bias_transform"
