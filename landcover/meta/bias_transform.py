"""Bias transformation: a learned vector concatenated to an early layer's input.

Finn & Levine, "Meta-Learning and Universality: Deep Representations and Gradient Descent
can Approximate any Learning Algorithm", ICLR 2018, section 6 ("bias transformation"; also
Finn, Yu, Zhang, Abbeel & Levine 2017, "One-Shot Visual Imitation Learning via
Meta-Learning", section 4.1). A vector ``z`` of parameters is concatenated to the input of
an early layer; ``z`` and the weights that read it are meta-learned *and* adapted in the
inner loop like every other weight. Because ``W [x; z] = W_x x + W_z z``, the layer gets a
bias ``W_z z`` whose gradient step is a product of two adapted factors, which makes
gradient-based adaptation more expressive than a plain bias.

We implement the concatenation exactly in that split form: the layer keeps its own
parameters (names unchanged, so ``adapt`` patterns and checkpoints still match) and gains
``bt_vector`` (``z``, shape ``(dim,)``) and ``bt_weight`` (``W_z``, ``(out, dim)``). For a
convolution the concatenated channels are constant over space; the extra term is then
``W_z z`` at every pixel (the sum of the kernel over its window, i.e. the value away from
zero-padded borders).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from landcover.meta.maml import MAML

#: Names of the parameters the transformation adds to its layer.
BT_PARAMS: tuple[str, str] = ("bt_vector", "bt_weight")


def _init_bt(layer: nn.Module, out: int, fan_in: int, dim: int, init: float) -> None:
    ref = layer.weight
    layer.bt_vector = nn.Parameter(
        torch.full((dim,), float(init), dtype=ref.dtype, device=ref.device)
    )
    bound = 1.0 / math.sqrt(fan_in + dim)
    weight = torch.empty(out, dim, dtype=ref.dtype, device=ref.device).uniform_(-bound, bound)
    layer.bt_weight = nn.Parameter(weight)


class BiasTransformLinear(nn.Linear):
    """``nn.Linear`` reading ``[x; z]``: ``W_x x + b + W_z z`` (weights copied from ``layer``)."""

    def __init__(self, layer: nn.Linear, dim: int, init: float = 0.01) -> None:
        super().__init__(layer.in_features, layer.out_features, bias=layer.bias is not None)
        self.to(layer.weight)
        self.load_state_dict(layer.state_dict())
        _init_bt(self, layer.out_features, layer.in_features, dim, init)

    def forward(self, x: Tensor) -> Tensor:
        """Affine map of ``x`` plus the transformation ``W_z z``."""
        return super().forward(x) + F.linear(self.bt_vector, self.bt_weight)


class BiasTransformConv2d(nn.Conv2d):
    """``nn.Conv2d`` reading ``[x; z]`` with ``z`` constant over space (see module docs)."""

    def __init__(self, layer: nn.Conv2d, dim: int, init: float = 0.01) -> None:
        super().__init__(
            layer.in_channels,
            layer.out_channels,
            layer.kernel_size,
            stride=layer.stride,
            padding=layer.padding,
            dilation=layer.dilation,
            groups=layer.groups,
            bias=layer.bias is not None,
            padding_mode=layer.padding_mode,
        )
        self.to(layer.weight)
        self.load_state_dict(layer.state_dict())
        fan_in = layer.in_channels // layer.groups * math.prod(layer.kernel_size)
        _init_bt(self, layer.out_channels, fan_in, dim, init)

    def forward(self, x: Tensor) -> Tensor:
        """Convolution of ``x`` plus ``W_z z`` at every pixel."""
        return super().forward(x) + F.linear(self.bt_vector, self.bt_weight)[None, :, None, None]


def add_bias_transform(
    model: nn.Module, dim: int = 10, layer: str | None = None, init: float = 0.01
) -> nn.Module:
    """Copy ``model`` with a bias transformation on one Linear or Conv2d layer.

    Args:
        model: The network (left unchanged).
        dim: Size of ``z``.
        layer: Qualified name of the layer (default: the first Linear or Conv2d).
        init: Initial value of every entry of ``z`` (0.01 as in Finn et al.'s code).

    Returns:
        The copy; its new parameters are ``f"{layer}.bt_vector"`` and ``f"{layer}.bt_weight"``.

    Raises:
        ValueError: ``dim < 1``, or no suitable layer (the message lists the candidates).
    """
    if int(dim) < 1:
        raise ValueError(f"bias transformation needs dim >= 1; got {dim}")
    candidates = [n for n, m in model.named_modules() if type(m) in (nn.Linear, nn.Conv2d)]
    if not candidates:
        raise ValueError("bias transformation needs a Linear or Conv2d layer; the model has none")
    name = candidates[0] if layer is None else layer
    if name not in candidates:
        raise ValueError(
            f"layer {name!r} is not a Linear/Conv2d of the model; choose one of {candidates}"
        )
    out = copy.deepcopy(model)
    parent_name, _, child = name.rpartition(".")
    parent = out.get_submodule(parent_name) if parent_name else out
    old = getattr(parent, child)
    cls = BiasTransformLinear if isinstance(old, nn.Linear) else BiasTransformConv2d
    setattr(parent, child, cls(old, int(dim), init))
    return out


def bias_transform_names(model: nn.Module) -> list[str]:
    """Qualified names of every bias-transformation parameter of ``model``."""
    return [n for n, _ in model.named_parameters() if n.rpartition(".")[2] in BT_PARAMS]


class BiasTransformMAML(MAML):
    """MAML on a copy of ``model`` with a bias transformation (Finn & Levine 2018).

    The transformation's ``z`` and ``W_z`` are adapted in the inner loop in addition to
    whatever ``adapt`` selects (all parameters by default), and meta-learned.

    Args:
        model: The network (copied; the copy is ``self.model``).
        loss_fn: ``(prediction, target) -> scalar``.
        bias_dim: Size of ``z``.
        bias_layer: Layer receiving ``z`` (default: the first Linear/Conv2d).
        adapt: Parameters adapted in the inner loop besides the transformation's.
        **options: Other :class:`~landcover.meta.maml.MAML` options.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: nn.Module | None = None,
        *,
        bias_dim: int = 10,
        bias_layer: str | None = None,
        adapt: Sequence[str] | str | None = None,
        **options: Any,
    ) -> None:
        wrapped = add_bias_transform(model, bias_dim, bias_layer)
        extra = bias_transform_names(wrapped)
        if adapt is not None:
            adapt = [adapt] if isinstance(adapt, str) else list(adapt)
            adapt = adapt + extra
        super().__init__(wrapped, loss_fn, adapt=adapt, **options)
        self.bias_transform_names = extra
