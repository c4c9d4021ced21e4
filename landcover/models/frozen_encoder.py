"""A pretrained encoder held fixed: no parameters, no batch statistics, features memoised.

A frozen ImageNet encoder (:mod:`landcover.models.pretrained`) is part of the model but not
of what any learner learns. :class:`FrozenEncoder` makes that structural rather than a
convention:

* its BatchNorm layers become fixed affine maps with the pretrained running statistics
  (timm's ``freeze_batch_norm_2d``, which keeps the activations timm fuses into its
  ``BatchNormAct2d`` layers), so its output never depends on the batch or
  the window (no transductive statistics, no seams between prediction windows);
* its parameters become buffers, so optimisers, inner loops and ``torch.autograd.grad``
  over the model's parameters never see them (they are still saved in the state dict and
  in bundles, and move with ``.to(device)``);
* it maps standardised bands onto the distribution the weights expect
  (:func:`landcover.models.pretrained.input_affine`) inside the graph, so bundles, ONNX
  exports and every predictor apply the same input scaling without knowing about it.

Because the output depends on the input alone, training and benchmarks may memoise it:
inside :func:`feature_cache` every per-tile result is kept (keyed by the encoder's weights
and the tile's bytes, least recently used evicted past a byte budget), so meta-training that
sees the same tiles for many outer steps, and evaluation that scores many methods on the
same tiles, run the encoder once per tile instead of once per use. Outside the context
nothing is kept.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn


class _FeatureStore:
    """Process-wide least-recently-used store of per-tile encoder features."""

    def __init__(self) -> None:
        self.limit = 0
        self.used = 0
        self.hits = 0
        self.misses = 0
        self.items: OrderedDict[tuple[str, ...], list[Tensor]] = OrderedDict()

    def get(self, key: tuple[str, ...]) -> list[Tensor] | None:
        found = self.items.get(key)
        if found is None:
            self.misses += 1
            return None
        self.items.move_to_end(key)
        self.hits += 1
        return found

    def put(self, key: tuple[str, ...], value: list[Tensor]) -> None:
        size = sum(v.numel() * v.element_size() for v in value)
        if size > self.limit:
            return
        self.items[key] = value
        self.used += size
        while self.used > self.limit and self.items:
            _, old = self.items.popitem(last=False)
            self.used -= sum(v.numel() * v.element_size() for v in old)

    def clear(self) -> None:
        self.items.clear()
        self.used = 0


_STORE = _FeatureStore()


@contextmanager
def feature_cache(limit_bytes: int = 2 * 1024**3) -> Iterator[_FeatureStore]:
    """Memoise frozen-encoder features per tile while the context is open.

    Nested uses keep the outer store (and the larger budget). The store is emptied when
    the outermost context closes.

    Args:
        limit_bytes: Budget of the store; least recently used tiles are evicted past it.

    Yields:
        The store (``hits``, ``misses``, ``used`` bytes) for reporting.
    """
    outer = _STORE.limit
    _STORE.limit = max(outer, int(limit_bytes))
    try:
        yield _STORE
    finally:
        _STORE.limit = outer
        if outer == 0:
            _STORE.clear()
            _STORE.hits = _STORE.misses = 0


def _freeze(module: nn.Module) -> nn.Module:
    """BatchNorm -> frozen BatchNorm (keeping timm's fused activations), params -> buffers."""
    from timm.layers import freeze_batch_norm_2d

    module = freeze_batch_norm_2d(module)
    for sub in module.modules():
        for name, param in list(sub._parameters.items()):
            if param is None:
                continue
            del sub._parameters[name]
            sub.register_buffer(name, param.detach().clone())
    return module


class FrozenEncoder(nn.Module):
    """An smp encoder frozen as described in the module docstring: ``x -> [x, f1, ...]``.

    Args:
        encoder: The smp encoder (pretrained weights already loaded).
        scale: Per-band scale of the input affine map.
        shift: Per-band shift of the input affine map.
        levels: Indices of the feature levels the decoder reads (``None``: all). Others are
            returned as zero-stride placeholders of the right shape (no memory).
    """

    def __init__(
        self,
        encoder: nn.Module,
        scale: Tensor,
        shift: Tensor,
        levels: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.encoder = _freeze(encoder).eval()
        self.register_buffer("input_scale", scale.reshape(1, -1, 1, 1).clone())
        self.register_buffer("input_shift", shift.reshape(1, -1, 1, 1).clone())
        self.levels = None if levels is None else sorted(int(i) for i in levels)
        self._fingerprint: str | None = None

    def train(self, mode: bool = True) -> FrozenEncoder:
        """Stay in eval mode (dropout and drop-path off) whatever the model's mode."""
        super().train(False)
        return self

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        self._fingerprint = None
        super()._load_from_state_dict(*args, **kwargs)

    def _apply(self, fn: Any, recurse: bool = True) -> FrozenEncoder:
        self._fingerprint = None
        return super()._apply(fn, recurse)

    def fingerprint(self) -> str:
        """Digest of the encoder's tensors (what its output depends on besides the input)."""
        if self._fingerprint is None:
            h = hashlib.blake2b(digest_size=16)
            for name, t in self.state_dict().items():
                h.update(name.encode())
                h.update(t.detach().cpu().contiguous().numpy().tobytes())
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    def _compute(self, x: Tensor) -> list[Tensor]:
        feats = list(self.encoder(x * self.input_scale + self.input_shift))
        feats[0] = x
        if self.levels is not None:
            for i in range(1, len(feats)):
                if i not in self.levels:
                    feats[i] = feats[i].new_zeros(()).expand(feats[i].shape)
        return feats

    def forward(self, x: Tensor) -> list[Tensor]:
        """Feature maps from fine to coarse (the first is the input itself)."""
        if _STORE.limit <= 0 or x.requires_grad or x.ndim != 4:
            return self._compute(x)
        fp = self.fingerprint()
        keys = [
            (
                fp,
                hashlib.blake2b(t.detach().cpu().contiguous().numpy().tobytes()).hexdigest(),
                str(tuple(t.shape)),
                str(t.dtype),
                str(t.device),
            )
            for t in x
        ]
        found = [_STORE.get(k) for k in keys]
        missing = [i for i, f in enumerate(found) if f is None]
        if missing:
            fresh = self._compute(x[missing])
            for j, i in enumerate(missing):
                item = [f[j : j + 1].clone() if f.stride(-1) != 0 else f[j : j + 1] for f in fresh]
                found[i] = item
                _STORE.put(keys[i], item)
        out = [x]
        for level in range(1, len(found[0])):
            parts = [f[level] for f in found]
            if parts[0].stride(-1) == 0:
                out.append(parts[0].expand(len(parts), *parts[0].shape[1:]))
            else:
                out.append(torch.cat(parts, dim=0))
        return out
