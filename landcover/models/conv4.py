"""The standard Conv-4 backbone of few-shot classification (Vinyals et al. 2016).

Four blocks of 3x3 convolution (64 channels) + BatchNorm + ReLU + 2x2 max-pool, as used by
Matching Networks, MAML (Finn et al. 2017), Prototypical Networks (Snell et al. 2017) and
MAML++ (Antoniou et al. 2019). On 28x28 Omniglot images the output is 64 x 1 x 1.

It follows the ``body`` / ``head`` split of ``docs/contracts.md``: ``body`` maps images to
flat features ``(n, D)``, ``head`` is a linear classifier (``nn.Identity`` when
``num_classes == 0``), ``forward(x) == head(body(x))`` and ``embed(x) == body(x)``, so
ANIL adapts only ``head.*`` and runs the body once per task, and prototype / closed-form /
black-box learners use ``embed``.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn


def conv_block(in_channels: int, out_channels: int, *, track_running_stats: bool) -> nn.Sequential:
    """3x3 conv (padding 1) + BatchNorm + ReLU + 2x2 max-pool."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
        nn.BatchNorm2d(out_channels, track_running_stats=track_running_stats),
        nn.ReLU(),
        nn.MaxPool2d(2),
    )


class Conv4(nn.Module):
    """Conv-4 with a linear head.

    Args:
        in_channels: Input channels (1 for Omniglot).
        num_classes: Outputs of the linear head; ``0`` gives an embedding network.
        hidden: Channels of every block (64 in the standard backbone).
        image_size: Input side length, to size the head (28 for Omniglot, 84 for
            miniImageNet).
        track_running_stats: BatchNorm policy. ``True`` keeps running statistics (used in
            eval mode: prototype, closed-form and black-box learners, baselines); ``False``
            always normalises with the current batch (transductive, the usual choice for
            MAML-family learners, so no statistics are shared across tasks by accident).
        blocks: Number of conv blocks (4 in the standard backbone).

    Attributes:
        feature_dim: Size ``D`` of the flat features of :meth:`embed`.
        config: JSON-serialisable constructor arguments.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 5,
        *,
        hidden: int = 64,
        image_size: int = 28,
        track_running_stats: bool = True,
        blocks: int = 4,
    ) -> None:
        super().__init__()
        if in_channels < 1 or hidden < 1 or blocks < 1 or num_classes < 0:
            raise ValueError(
                f"Conv4 needs in_channels, hidden, blocks >= 1 and num_classes >= 0; got "
                f"{in_channels}, {hidden}, {blocks}, {num_classes}"
            )
        side = image_size
        for _ in range(blocks):
            side //= 2
        if side < 1:
            raise ValueError(
                f"image_size {image_size} is too small for {blocks} max-pool blocks; "
                f"use at least {2**blocks} pixels"
            )
        chans = [in_channels] + [hidden] * blocks
        layers: list[nn.Module] = [
            conv_block(chans[i], chans[i + 1], track_running_stats=track_running_stats)
            for i in range(blocks)
        ]
        self.body = nn.Sequential(*layers, nn.Flatten())
        self.feature_dim = hidden * side * side
        self.head: nn.Module = (
            WayLinear(self.feature_dim, num_classes) if num_classes > 0 else nn.Identity()
        )
        self.num_classes = num_classes
        self.config: dict[str, Any] = {
            "in_channels": in_channels,
            "num_classes": num_classes,
            "hidden": hidden,
            "image_size": image_size,
            "track_running_stats": track_running_stats,
            "blocks": blocks,
        }

    def set_active_way(self, n_way: int) -> None:
        """Restrict the head to its first ``n_way`` outputs (``0``: all); see WayLinear."""
        if n_way < 0 or n_way > self.num_classes:
            raise ValueError(f"active way must be in 0..{self.num_classes}; got {n_way}")
        if isinstance(self.head, WayLinear):
            self.head.active_way = n_way

    def embed(self, x: Tensor) -> Tensor:
        """Flat features ``(n, feature_dim)``."""
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(n, num_classes)`` (features when ``num_classes == 0``)."""
        if x.ndim != 4:
            raise ValueError(f"Conv4 expects images (n, C, H, W); got shape {tuple(x.shape)}")
        return self.head(self.body(x))


class WayLinear(nn.Linear):
    """Linear classifier whose first ``active_way`` outputs are the live ones.

    One network with ``max_way`` outputs then serves 5-way and 20-way tasks (labels
    ``0..N-1``): optimization-based learners adapt it on ``N``-way tasks with a softmax
    over ``N`` logits. Parameter names stay ``weight`` / ``bias``; ``0`` = all outputs.
    """

    active_way: int = 0

    def forward(self, x: Tensor) -> Tensor:
        """Logits of the active classes."""
        out = super().forward(x)
        return out[:, : self.active_way] if self.active_way else out
