"""Learners by name: ``build_learner("maml", model, loss_fn, **options)``.

:data:`LEARNERS` maps a name to a learner class, or to ``"module:Class"`` for classes
imported on first use (families that live in their own modules register with one line).
A learner class takes ``(model, loss_fn, **options)``; the options must be
JSON-serialisable because they are stored in model bundles.
"""

from __future__ import annotations

import importlib
import inspect
import json
from typing import Any

from torch import nn

from landcover.meta.protocol import Learner

#: name -> learner class, or "module:Class" imported lazily.
LEARNERS: dict[str, type[Learner] | str] = {
    "maml": "landcover.meta.maml:MAML",
    "fomaml": "landcover.meta.maml:FOMAML",
    "reptile": "landcover.meta.reptile:Reptile",
    "metasgd": "landcover.meta.metasgd:MetaSGD",
    "anil": "landcover.meta.anil:ANIL",
    "cavia": "landcover.meta.cavia:CAVIA",
    "imaml": "landcover.meta.imaml:IMAML",
    "mamlpp": "landcover.meta.mamlpp:MAMLPlusPlus",
    "pretrain": "landcover.meta.baselines:PretrainFinetune",
    "scratch": "landcover.meta.baselines:Scratch",
    "protonet": "landcover.meta.protonet:ProtoNet",
    "ridge": "landcover.meta.ridge:RidgeHead",
    "cnp": "landcover.meta.cnp:CNP",
    "mann": "landcover.meta.mann:MANN",
    "snail": "landcover.meta.snail:SNAIL",
    "meta_lstm": "landcover.meta.meta_lstm:MetaLSTM",
    "metanet": "landcover.meta.metanet:MetaNetwork",
    "metaoptnet_svm": "landcover.meta.svm_head:MetaOptSVM",
    "bias_transform": "landcover.meta.bias_transform:BiasTransformMAML",
    "alphamaml": "landcover.meta.alpha_maml:AlphaMAML",
}

#: Live view of the registered names.
LEARNER_NAMES = LEARNERS.keys()


def learner_class(name: str) -> type[Learner]:
    """The class registered under ``name``.

    Raises:
        KeyError: Unknown name (the message lists the valid ones).
    """
    if name not in LEARNERS:
        raise KeyError(f"unknown learner {name!r}; choose one of {sorted(LEARNERS)}")
    entry = LEARNERS[name]
    if isinstance(entry, str):
        module, _, attr = entry.partition(":")
        entry = getattr(importlib.import_module(module), attr)
        LEARNERS[name] = entry
    return entry


def build_learner(
    name: str, model: nn.Module, loss_fn: nn.Module | None, **options: Any
) -> Learner:
    """Build the learner ``name`` around ``model``.

    Args:
        name: A key of :data:`LEARNERS`.
        model: The network (meta-learned in place of its initial weights).
        loss_fn: ``(prediction, target) -> scalar``; ``None`` means MSE.
        **options: JSON-serialisable learner options (``inner_lr``, ``steps``, ...).

    Returns:
        The learner, with ``learner.name`` and ``learner.options`` set for bundles.

    Raises:
        KeyError: Unknown learner name.
        ValueError: Options not JSON-serialisable or not accepted by the learner.
    """
    cls = learner_class(name)
    try:
        json.dumps(options)
    except TypeError as err:
        raise ValueError(f"learner options must be JSON-serialisable: {err}") from err
    accepted = _accepted_options(cls)
    if accepted is not None:
        unknown = sorted(set(options) - accepted)
        if unknown:
            raise ValueError(
                f"learner {name!r} does not take option(s) {unknown}; valid: {sorted(accepted)}"
            )
    learner = cls(model, loss_fn, **options)
    learner.name = name
    learner.options = dict(options)
    return learner


def _accepted_options(cls: type) -> set[str] | None:
    """Keyword options of ``cls`` along its MRO (``None`` if it takes anything)."""
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters.values()
        names |= {p.name for p in params if p.kind is p.KEYWORD_ONLY}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            return names
    return None
