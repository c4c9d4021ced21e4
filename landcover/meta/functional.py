"""Functional building blocks of every gradient-based learner.

Parameters and buffers are explicit dicts and the forward pass is
:func:`torch.func.functional_call`, so an inner loop returns new dicts and never touches the
module (Finn et al. 2017, "Model-Agnostic Meta-Learning", written the way functorch's MAML
example writes it). Two ways of taking inner gradients are offered:

* :func:`autograd_grads`: :func:`torch.autograd.grad` with ``allow_unused=True`` (parameters
  the loss never reaches get a zero gradient), used by the default task-by-task loop;
* :func:`func_grads`: :func:`torch.func.grad`, which composes with :func:`torch.func.vmap`
  (tasks of a meta-batch batched into one computation) and with outer autograd.

First order means no graph through the inner gradient (``create_graph=False`` and the
gradient detached); the fast weights still depend on the meta-parameters through the
identity, which is exactly first-order MAML's meta-gradient.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

TensorDict = dict[str, Tensor]

#: ``(module, params, buffers, args) -> output`` used by :func:`call` instead of
#: :func:`torch.func.functional_call` in this thread / asyncio task (see :func:`call_with`).
_CALL: ContextVar[Callable[..., Any] | None] = ContextVar("landcover_call", default=None)


@contextmanager
def call_with(fn: Callable[..., Any]) -> Iterator[None]:
    """Within the block, :func:`call` runs ``fn(module, params, buffers, args)``.

    Context-local (a :class:`~contextvars.ContextVar`): the ONNX exporter traces a learner
    with a call the tracer accepts without changing how other threads' learners run.
    """
    token = _CALL.set(fn)
    try:
        yield
    finally:
        _CALL.reset(token)


def named_params(module: nn.Module, *, detach: bool = False) -> TensorDict:
    """Return ``{name: parameter}`` of ``module`` (detached copies when ``detach``)."""
    if detach:
        return {n: p.detach() for n, p in module.named_parameters()}
    return dict(module.named_parameters())


def named_buffers(module: nn.Module) -> TensorDict:
    """Return ``{name: buffer}`` of ``module``."""
    return dict(module.named_buffers())


def call(
    module: nn.Module, params: Mapping[str, Tensor], buffers: Mapping[str, Tensor], *args: Any
) -> Any:
    """Run ``module`` with the given parameters and buffers, leaving the module untouched.

    Args:
        module: The network.
        params: Parameters by name; names missing here keep the module's own tensors.
        buffers: Buffers by name (same rule).
        *args: Positional inputs of ``module.forward``.

    Returns:
        Whatever ``module.forward`` returns.
    """
    override = _CALL.get()
    if override is not None:
        return override(module, params, buffers, args)
    return functional_call(module, (dict(params), dict(buffers)), args, strict=False)


def sub_dict(tensors: Mapping[str, Tensor], prefix: str) -> TensorDict:
    """Entries of ``tensors`` under ``prefix`` (``"head."``) with the prefix stripped."""
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def select_names(names: Sequence[str], patterns: Iterable[str] | None) -> list[str]:
    """Names matching any pattern, in the order of ``names``.

    A pattern matches a name when it equals it, is a dotted prefix of it (``"head"`` or
    ``"head."`` selects ``"head.classifier.weight"``) or matches it as a shell glob
    (``"*.bias"``). ``None`` selects every name.

    Raises:
        ValueError: A pattern matches nothing (a typo would otherwise freeze the model).
    """
    if patterns is None:
        return list(names)
    if isinstance(patterns, str):
        patterns = [patterns]
    chosen: set[str] = set()
    for pattern in patterns:
        stem = pattern.rstrip(".")
        hits = {
            n
            for n in names
            if n == stem or n.startswith(stem + ".") or fnmatch.fnmatchcase(n, pattern)
        }
        if not hits:
            preview = ", ".join(list(names)[:12])
            raise ValueError(
                f"parameter pattern {pattern!r} matches no parameter of the model; "
                f"names look like: {preview}{', ...' if len(names) > 12 else ''}"
            )
        chosen |= hits
    return [n for n in names if n in chosen]


def autograd_grads(loss: Tensor, params: Mapping[str, Tensor], *, create_graph: bool) -> TensorDict:
    """Gradients of ``loss`` w.r.t. ``params``; unreached parameters get zeros.

    Args:
        loss: Scalar loss.
        params: Tensors to differentiate against (must require grad).
        create_graph: Keep the graph of the gradient (second order). When false the
            returned gradients are detached.

    Returns:
        ``{name: gradient}`` with the keys of ``params``.
    """
    names = list(params)
    tensors = [params[n] for n in names]
    grads = torch.autograd.grad(loss, tensors, create_graph=create_graph, allow_unused=True)
    out: TensorDict = {}
    for n, t, g in zip(names, tensors, grads):
        if g is None:
            g = torch.zeros_like(t)
        out[n] = g if create_graph else g.detach()
    return out


def func_grads(
    loss_of: Callable[[TensorDict], Tensor], params: TensorDict, *, create_graph: bool
) -> TensorDict:
    """Gradients of ``loss_of(params)`` by :func:`torch.func.grad` (works under ``vmap``).

    With ``create_graph=False`` the gradient is taken at detached parameters, so no graph
    is built through it (first order).
    """
    if create_graph:
        return torch.func.grad(loss_of)(params)
    return torch.func.grad(loss_of)({k: v.detach() for k, v in params.items()})


def ensure_grad(params: TensorDict) -> TensorDict:
    """Make every tensor usable by :func:`torch.autograd.grad` (leaf copies if needed)."""
    return {k: v if v.requires_grad else v.detach().requires_grad_() for k, v in params.items()}


def sgd_step(
    params: TensorDict, grads: Mapping[str, Tensor], rate: Callable[[str], Tensor | float]
) -> TensorDict:
    """One gradient step ``p - rate(name) * g`` on every entry of ``params``."""
    return {n: p - rate(n) * grads[n] for n, p in params.items()}


def flatten(tensors: Mapping[str, Tensor], names: Sequence[str]) -> Tensor:
    """Concatenate the entries ``names`` of ``tensors`` into one vector."""
    return torch.cat([tensors[n].reshape(-1) for n in names])


def unflatten(vector: Tensor, like: Mapping[str, Tensor], names: Sequence[str]) -> TensorDict:
    """Inverse of :func:`flatten`: split ``vector`` into tensors shaped as in ``like``."""
    out: TensorDict = {}
    offset = 0
    for n in names:
        size = like[n].numel()
        out[n] = vector[offset : offset + size].view_as(like[n])
        offset += size
    return out


def safe_key(name: str) -> str:
    """Parameter name usable as an ``nn.ParameterDict`` key (dots are not allowed)."""
    return name.replace(".", "__")
