"""BatchNorm as an explicit policy of gradient-based learners.

Running statistics are state that silently crosses task boundaries: a BatchNorm layer in
training mode updates its buffers in place, so adapting to one task would change what
the next task (or the meta-model) sees. Antoniou et al. 2019 ("How to train your MAML",
MAML++, section 4) keep per-step statistics and per-step affine parameters instead.
A learner picks one policy by name:

* ``"none"``: the model has no BatchNorm (BN-free MLP, or the models area converted BN
  to GroupNorm, Wu & He 2018). A model that does have BatchNorm is refused.
* ``"transductive"``: normalise with the statistics of the batch at hand, always (also in
  eval mode), as the original MAML code does; the running buffers are never touched
  (each call gets throw-away copies).
* ``"per_step"`` (MAML++): one set of running statistics and one pair of affine
  parameters per inner step ``0..N-1`` plus one for the final (query / prediction)
  forward ``N``, owned by the learner. Training-mode forwards normalise with batch
  statistics and fold them into that step's running statistics (the deliberate, meta-level
  update MAML++ makes); eval-mode forwards normalise with them and update nothing. The
  model's own BatchNorm buffers are never used nor changed.
* ``"auto"``: ``"none"`` for BN-free models, else the learner's default.

Step-count rule: adapting with more inner steps than trained reuses the statistics and
affine parameters of the last inner step ``N-1`` for the extra steps; the final forward
always uses entry ``N``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from landcover.meta.functional import safe_key

#: Valid values of a learner's ``bn`` option.
BN_POLICIES: tuple[str, ...] = ("auto", "none", "transductive", "per_step")


def batchnorm_layers(model: nn.Module) -> dict[str, _BatchNorm]:
    """BatchNorm modules of ``model`` by qualified name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, _BatchNorm)}


def resolve_policy(model: nn.Module, policy: str, default: str) -> str:
    """Turn ``policy`` (possibly ``"auto"``) into the concrete policy for ``model``.

    Raises:
        ValueError: Unknown policy, or ``"none"`` for a model with BatchNorm layers.
    """
    if policy not in BN_POLICIES:
        raise ValueError(f"unknown bn policy {policy!r}; choose one of {list(BN_POLICIES)}")
    layers = batchnorm_layers(model)
    if policy == "auto":
        return default if layers else "none"
    if policy == "none" and layers:
        raise ValueError(
            f"bn='none' but the model has {len(layers)} BatchNorm layers (e.g. "
            f"{next(iter(layers))!r}); choose bn='transductive' or 'per_step', or build the "
            "model with norm='group'"
        )
    if policy != "none" and not layers:
        return "none"
    return policy


@contextmanager
def bn_mode(model: nn.Module, training: bool) -> Iterator[None]:
    """Temporarily put every BatchNorm layer of ``model`` in training or eval mode."""
    layers = list(batchnorm_layers(model).values())
    saved = [m.training for m in layers]
    try:
        for m in layers:
            m.training = training
        yield
    finally:
        for m, flag in zip(layers, saved):
            m.training = flag


class BatchNormState(nn.Module):
    """What a BatchNorm policy needs at each forward of the inner loop.

    Args:
        model: The network (read for its BatchNorm layers; never modified).
        policy: A concrete policy (see :func:`resolve_policy`).
        steps: Trained number of inner steps ``N`` (``per_step`` keeps ``N + 1`` entries).
        per_step_affine: With ``per_step``, also learn per-step affine parameters.
    """

    def __init__(
        self, model: nn.Module, policy: str, steps: int, *, per_step_affine: bool = True
    ) -> None:
        super().__init__()
        self.policy = policy
        self.steps = int(steps)
        self._layers = {n: m for n, m in batchnorm_layers(model).items()}
        self.per_step_affine = bool(per_step_affine) and policy == "per_step"
        self.weight = nn.ParameterDict()
        self.bias = nn.ParameterDict()
        entries = self.steps + 1
        #: Training-mode forwards folded into each entry since the last
        #: :meth:`reset_updates` (read by the DDP all-reduce of the running statistics).
        self.register_buffer("updates", torch.zeros(entries, dtype=torch.long), persistent=False)
        if policy != "per_step":
            return
        for name, m in self._layers.items():
            key = safe_key(name)
            c = m.num_features
            mean = m.running_mean if m.running_mean is not None else torch.zeros(c)
            var = m.running_var if m.running_var is not None else torch.ones(c)
            self.register_buffer(f"mean__{key}", mean.detach().clone().repeat(entries, 1))
            self.register_buffer(f"var__{key}", var.detach().clone().repeat(entries, 1))
            if self.per_step_affine and m.affine:
                self.weight[key] = nn.Parameter(m.weight.detach().clone().repeat(entries, 1))
                self.bias[key] = nn.Parameter(m.bias.detach().clone().repeat(entries, 1))

    def count_update(self, step: int | None, forwards: int = 1) -> None:
        """Record ``forwards`` training-mode forwards folded into ``step``'s entry."""
        if self.policy == "per_step":
            self.updates[self.index(step)] += int(forwards)

    def reset_updates(self) -> None:
        """Zero the per-entry update counts."""
        self.updates.zero_()

    def running_stats(self) -> dict[str, tuple[Tensor, Tensor, float | None]]:
        """``{layer: (means [N+1, C], vars [N+1, C], momentum)}`` of the per-step policy."""
        out: dict[str, tuple[Tensor, Tensor, float | None]] = {}
        if self.policy != "per_step":
            return out
        for name, m in self._layers.items():
            key = safe_key(name)
            momentum = None if m.momentum is None else float(m.momentum)
            out[name] = (getattr(self, f"mean__{key}"), getattr(self, f"var__{key}"), momentum)
        return out

    def replaced_params(self) -> list[str]:
        """Model parameter names this policy substitutes (not adapted in the inner loop)."""
        out = []
        for name in self._layers:
            if safe_key(name) in self.weight:
                out += [f"{name}.weight", f"{name}.bias"]
        return out

    def index(self, step: int | None) -> int:
        """Entry used by inner step ``step`` (``None``: the final forward)."""
        if step is None:
            return self.steps
        return min(step, max(self.steps - 1, 0))

    def training_flag(self, training: bool) -> bool:
        """Mode the BatchNorm layers run in for a forward of the given learner mode."""
        return True if self.policy == "transductive" else training

    def tensors(self, step: int | None) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Parameter overrides and buffers for the forward of inner step ``step``.

        Args:
            step: Inner step index, or ``None`` for the final (query / prediction) forward.

        Returns:
            ``(params, buffers)`` to merge into the functional call.
        """
        params: dict[str, Tensor] = {}
        buffers: dict[str, Tensor] = {}
        if self.policy == "none":
            return params, buffers
        i = self.index(step)
        for name, m in self._layers.items():
            key = safe_key(name)
            if m.num_batches_tracked is not None:
                buffers[f"{name}.num_batches_tracked"] = m.num_batches_tracked.clone()
            if self.policy == "transductive":
                if m.running_mean is not None:
                    buffers[f"{name}.running_mean"] = m.running_mean.clone()
                    buffers[f"{name}.running_var"] = m.running_var.clone()
                continue
            # per_step: views into this module's buffers, so a training-mode forward folds
            # the batch statistics into this step's running statistics (and nowhere else).
            buffers[f"{name}.running_mean"] = getattr(self, f"mean__{key}")[i]
            buffers[f"{name}.running_var"] = getattr(self, f"var__{key}")[i]
            if key in self.weight:
                params[f"{name}.weight"] = self.weight[key][i]
                params[f"{name}.bias"] = self.bias[key][i]
        return params, buffers
