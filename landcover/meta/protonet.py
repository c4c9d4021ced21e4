"""Prototypical Networks, for classification and segmentation.

Snell, Swersky & Zemel, "Prototypical Networks for Few-shot Learning", NeurIPS 2017.

A class prototype is the mean embedding of the class's support items; a query is scored
by the negative squared Euclidean distance to each prototype, ``logits = -||f(x) - c_k||^2``
(Snell et al., eq. 1-2). Nothing is adapted by gradient steps: the embedding network is
meta-learned through the query cross-entropy.

The same two functions serve segmentation: with per-pixel embeddings ``(n, D, H, W)`` and
masks ``(n, H, W)``, a prototype is the masked average pooling of the embeddings over the
pixels of its class (Dong & Xing, BMVC 2018; Wang et al., PANet, ICCV 2019), pixels equal
to ``ignore_index`` (255) are left out, and every query pixel is scored against every
prototype, giving ``(n, K, H, W)`` logits. Embeddings whose size differs from the masks'
are bilinearly resized to the masks first.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from landcover.meta.embedding import encode
from landcover.meta.protocol import AdaptedState, Learner, TaskResult
from landcover.tasks.task import Task

IGNORE_INDEX = 255


def class_prototypes(
    embeddings: Tensor,
    labels: Tensor,
    num_classes: int | None = None,
    *,
    ignore_index: int = IGNORE_INDEX,
) -> tuple[Tensor, Tensor]:
    """Mean embedding of every class (masked average pooling for per-pixel embeddings).

    Args:
        embeddings: ``(n, D)`` vectors, or ``(n, D, H', W')`` per-pixel embeddings.
        labels: ``(n,)`` labels for vectors, ``(n, H, W)`` masks for per-pixel embeddings.
        num_classes: Number of prototypes ``K``; default ``max label + 1``.
        ignore_index: Label value excluded from every prototype.

    Returns:
        ``(prototypes (K, D), present (K,) bool)``; absent classes have zero prototypes and
        ``present`` False.

    Raises:
        ValueError: If shapes do not match or a label is out of range.
    """
    if embeddings.ndim == 2:
        if labels.shape != embeddings.shape[:1]:
            raise ValueError(
                f"labels {tuple(labels.shape)} must be ({embeddings.shape[0]},) "
                f"for embeddings {tuple(embeddings.shape)}"
            )
        flat, lab = embeddings, labels
    elif embeddings.ndim == 4:
        if labels.ndim != 3 or labels.shape[0] != embeddings.shape[0]:
            raise ValueError(
                f"masks {tuple(labels.shape)} must be (n, H, W) with n = "
                f"{embeddings.shape[0]} for embeddings {tuple(embeddings.shape)}"
            )
        if embeddings.shape[-2:] != labels.shape[-2:]:
            embeddings = F.interpolate(
                embeddings, size=labels.shape[-2:], mode="bilinear", align_corners=False
            )
        flat = embeddings.permute(0, 2, 3, 1).reshape(-1, embeddings.shape[1])
        lab = labels.reshape(-1)
    else:
        raise ValueError(
            f"embeddings must be (n, D) or (n, D, H, W); got {tuple(embeddings.shape)}"
        )
    keep = lab != ignore_index
    flat, lab = flat[keep], lab[keep].long()
    if num_classes is None:
        num_classes = int(lab.max()) + 1 if lab.numel() else 0
    if lab.numel() and (int(lab.min()) < 0 or int(lab.max()) >= num_classes):
        raise ValueError(
            f"labels must lie in 0..{num_classes - 1} (or be {ignore_index}); "
            f"got range {int(lab.min())}..{int(lab.max())}"
        )
    sums = flat.new_zeros(num_classes, flat.shape[1]).index_add(0, lab, flat)
    counts = torch.bincount(lab, minlength=num_classes).to(flat.dtype)
    present = counts > 0
    return sums / counts.clamp(min=1).unsqueeze(1), present


def prototype_logits(
    embeddings: Tensor, prototypes: Tensor, present: Tensor | None = None
) -> Tensor:
    """Negative squared Euclidean distances to the prototypes.

    Args:
        embeddings: ``(n, D)`` or ``(n, D, H, W)``.
        prototypes: ``(K, D)``.
        present: Optional ``(K,)`` mask; absent classes get a very low finite logit
            (``-1e4`` below the smallest present logit) so they are never predicted.

    Returns:
        ``(n, K)`` or ``(n, K, H, W)`` logits.
    """
    if embeddings.ndim == 4:
        n, d, h, w = embeddings.shape
        flat = embeddings.permute(0, 2, 3, 1).reshape(-1, d)
        return prototype_logits(flat, prototypes, present).reshape(n, h, w, -1).permute(0, 3, 1, 2)
    if embeddings.ndim != 2 or embeddings.shape[1] != prototypes.shape[1]:
        raise ValueError(
            f"embeddings {tuple(embeddings.shape)} do not match prototypes "
            f"{tuple(prototypes.shape)}"
        )
    # ||e||^2 - 2 e.c + ||c||^2, the expanded form avoids an (n, K, D) tensor
    d2 = (
        embeddings.pow(2).sum(1, keepdim=True)
        - 2 * embeddings @ prototypes.T
        + prototypes.pow(2).sum(1).unsqueeze(0)
    )
    logits = -d2.clamp(min=0)
    if present is not None and not bool(present.all()):
        floor = logits[:, present].min().detach() - 1e4 if bool(present.any()) else -1e4
        logits = torch.where(present.unsqueeze(0), logits, torch.full_like(logits, float(floor)))
    return logits


class ProtoNet(Learner):
    """Prototypical Networks behind the learner protocol.

    Args:
        encoder: Embedding network; its ``embed(x)`` is used when it has one (Conv-4,
            segmentation models' per-pixel embeddings), else ``encoder(x)``.
        loss_fn: Query loss; cross-entropy with ``ignore_index=255`` by default.
        num_classes: Fixed number of prototypes (segmentation schemes); ``None`` infers
            ``max support label + 1`` per task.
    """

    def __init__(
        self,
        encoder: nn.Module,
        loss_fn: nn.Module | None = None,
        *,
        num_classes: int | None = None,
    ) -> None:
        super().__init__(loss_fn if loss_fn is not None else nn.CrossEntropyLoss(ignore_index=255))
        self.encoder = encoder
        self.num_classes = num_classes

    def embed(self, x: Tensor) -> Tensor:
        """Embeddings ``(n, D)`` (flattened) or per-pixel ``(n, D, H, W)``."""
        out = encode(self.encoder, x)
        return out if out.ndim in (2, 4) else out.flatten(1)

    def adapt(
        self,
        support_x: Tensor,
        support_y: Tensor,
        *,
        steps: int | None = None,
        create_graph: bool = False,
    ) -> AdaptedState:
        """Prototypes of the support classes (``steps`` is ignored: no inner loop)."""
        with torch.set_grad_enabled(create_graph or torch.is_grad_enabled()):
            protos, present = class_prototypes(self.embed(support_x), support_y, self.num_classes)
        state = AdaptedState(extras={"prototypes": protos, "present": present})
        return state if create_graph else state.detached()

    def predict(self, state: AdaptedState, x: Tensor) -> Tensor:
        """Logits ``-||f(x) - c_k||^2`` (per pixel for per-pixel embeddings)."""
        return prototype_logits(self.embed(x), state.extras["prototypes"], state.extras["present"])

    def task_loss(self, task: Task, *, training: bool = True) -> TaskResult:
        """Query cross-entropy with prototypes of the support set."""
        state = self.adapt(task.support_x, task.support_y, create_graph=training)
        logits = self.predict(state, task.query_x)
        loss = self.loss_fn(logits, task.query_y)
        valid = task.query_y != IGNORE_INDEX
        acc = (logits.argmax(1) == task.query_y)[valid].float().mean()
        return TaskResult(
            loss if training else loss.detach(), float(loss.detach()), {"accuracy": float(acc)}
        )
