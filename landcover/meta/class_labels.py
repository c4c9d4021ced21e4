"""Validation of the class labels of a support set for learners that need every class.

Learners that build one output per class from the support set itself (MetaNetworks'
per-class fast weights, Munkhdalai & Yu, ICML 2017; MetaOptNet's per-class SVM weights,
Lee et al., CVPR 2019) need the labels to be ``0..N-1`` with each class present at least
once; a gap would leave a class with no weights at all.
"""

from __future__ import annotations

import torch
from torch import Tensor


def dense_class_count(support_y: Tensor, learner: str, *, max_way: int | None = None) -> int:
    """The number of classes ``N`` of support labels that must be exactly ``0..N-1``.

    Args:
        support_y: Support labels, a 1-D ``int64`` or ``int32`` tensor.
        learner: The learner's name, for the error message.
        max_way: Largest ``N`` the learner handles; ``None``: no limit.

    Returns:
        ``N = max(support_y) + 1``.

    Raises:
        ValueError: Labels that are not 1-D integers, a class of ``0..N-1`` missing from
            the support set, a negative label, or ``N > max_way``.
    """
    if support_y.dtype not in (torch.int64, torch.int32) or support_y.dim() != 1:
        raise ValueError(
            f"{learner} classifies: support_y must be 1-D integer labels; got "
            f"{support_y.dtype} of shape {tuple(support_y.shape)}"
        )
    n_way = int(support_y.max()) + 1
    present = sorted(set(support_y.tolist()))
    if present != list(range(n_way)) or (max_way is not None and n_way > max_way):
        limit = "" if max_way is None else f" and N <= max_way={max_way}"
        missing = sorted(set(range(n_way)) - set(present))
        raise ValueError(
            f"labels must be 0..N-1 with every class in the support set{limit}; "
            f"got classes {present}, missing {missing}"
        )
    return n_way
