"""What a request costs in compute, and a time limit that stops work which runs too long.

Limits on bytes and pixels do not bound the work a request causes: a 418 KB flat PNG of
10000×10000 pixels is small on the wire and costs minutes of prediction. The service
therefore prices each request in floating-point operations of its model, measured once
per base model:

* :func:`flops_per_pixel` counts the operations of one forward pass of the model on one
  tile with :class:`torch.utils.flop_counter.FlopCounterMode`, divided by the tile's pixels;
* a prediction costs ``pixels × flops_per_pixel`` (:func:`predict_gflop`);
* an adaptation costs ``3 × (steps + 2) × pool pixels × flops_per_pixel × 3``
  (:func:`adapt_gflop`): each inner step is a forward and a backward pass (about three
  forwards, Kaplan et al. 2020, "Scaling laws for neural language models", §2.1), plus
  the scoring passes before and after; the pool is the support pixels, capped at the crop
  pool the adaptation really works on (:data:`landcover.inference.adapt.POOL_PIXELS`
  network pixels, whatever the tiles hold), and the guard's trial runs
  (:func:`landcover.inference.adapt_guard.candidate_steps`: about twice the steps) and
  final run make the first factor 3.

Requests whose cost passes ``max_predict_gflop`` / ``max_adapt_gflop`` get a 413 saying
how to make them smaller. What the estimate misses (a slow disk, a busy host) is caught by
:func:`time_limit`: work runs under a deadline checked before every module's forward pass
(a global forward pre-hook of :mod:`torch.nn`), so a job past ``job_time_limit_s`` or a
prediction past ``predict_time_limit_s`` stops at the next layer with
:class:`TimeLimitExceeded` instead of holding a worker for ever.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from landcover.inference.bundle import ModelBundle, find_model

log = logging.getLogger("landcover.api.compute")

#: Passes of an inner step relative to one forward (forward + backward).
TRAIN_FACTOR = 3.0
#: Runs of the guarded adaptation relative to one: trial runs (~2x the steps) + the final one.
GUARD_FACTOR = 3.0

_local = threading.local()
_cache: dict[str, float] = {}
_cache_lock = threading.Lock()
_hook_lock = threading.Lock()
_hook_installed = False


class TimeLimitExceeded(Exception):
    """Work ran past its deadline (raised inside the model's forward pass)."""


def flops_per_pixel(bundle: ModelBundle) -> float:
    """Floating-point operations of one forward pass per input pixel (measured once).

    The count depends only on the architecture, the band count and the tile size, so it is
    cached per process under those.
    """
    key = json.dumps([bundle.model, bundle.learner.get("name"), list(bundle.bands),
                      int(bundle.tile_size)], sort_keys=True, default=str)  # fmt: skip
    with _cache_lock:
        if key in _cache:
            return _cache[key]
    value = _measure(bundle)
    with _cache_lock:
        _cache[key] = value
    return value


def _measure(bundle: ModelBundle) -> float:
    learner = bundle.build_learner("cpu")
    size = int(bundle.tile_size)
    x = torch.zeros(1, len(bundle.bands), size, size)
    try:
        model = find_model(learner)
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(x)
        return max(float(counter.get_total_flops()) / (size * size), 1.0)
    except Exception as exc:  # an exotic network: estimate rather than refuse the model
        params = sum(p.numel() for p in learner.parameters())
        log.warning("cannot count the FLOP of %s (%s); estimating 2 × %d parameters per "
                    "pixel", bundle.model.get("arch"), exc, params)  # fmt: skip
        return max(2.0 * params, 1.0)


def predict_gflop(pixels: int, per_pixel: float) -> float:
    """Cost of segmenting ``pixels`` pixels, in GFLOP."""
    return pixels * per_pixel / 1e9


def adapt_gflop(
    support_pixels: int, steps: int, per_pixel: float, pool_pixels: int | None = None
) -> float:
    """Cost of adapting on ``support_pixels`` pixels for ``steps`` inner steps, in GFLOP.

    Args:
        support_pixels: Pixels of all support tiles.
        steps: Most inner steps.
        per_pixel: FLOP of one forward pass per input pixel.
        pool_pixels: The crop pool's budget in input pixels
            (:func:`landcover.inference.adapt.input_pixel_budget`);
            ``None``: every support pixel.
    """
    used = support_pixels if pool_pixels is None else min(support_pixels, pool_pixels)
    return GUARD_FACTOR * (steps + 2) * used * per_pixel * TRAIN_FACTOR / 1e9


def _check_deadline(module: torch.nn.Module, args: Any) -> None:
    deadline = getattr(_local, "deadline", None)
    if deadline is not None and time.monotonic() > deadline[0]:
        raise TimeLimitExceeded(deadline[1])


def _install_hook() -> None:
    global _hook_installed
    with _hook_lock:
        if not _hook_installed:
            torch.nn.modules.module.register_module_forward_pre_hook(_check_deadline)
            _hook_installed = True


@contextmanager
def time_limit(seconds: float, what: str) -> Iterator[None]:
    """Run the block under a deadline of ``seconds`` (this thread's model calls only).

    Raises:
        TimeLimitExceeded: From the first module forward pass after the deadline; its
            message is ``what``.
    """
    _install_hook()
    previous = getattr(_local, "deadline", None)
    _local.deadline = (time.monotonic() + seconds, what)
    try:
        yield
    finally:
        _local.deadline = previous
