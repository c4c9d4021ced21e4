"""A tiny body/head segmentation network (the models-area contract) for the meta tests."""

from __future__ import annotations

import torch
from torch import nn


class Body(nn.Module):
    def __init__(self, cin: int, width: int, bn: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, width, 3, padding=1)
        self.norm = nn.BatchNorm2d(width) if bn else nn.Identity()
        self.unused = nn.Conv2d(width, width, 1)  # a stage the loss never reaches

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [torch.relu(self.norm(self.conv(x)))]


class Head(nn.Module):
    def __init__(self, width: int, classes: int, bn: bool) -> None:
        super().__init__()
        self.decoder = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1),
            nn.BatchNorm2d(width) if bn else nn.Identity(),
            nn.ReLU(),
        )
        self.classifier = nn.Conv2d(width, classes, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.classifier(self.decoder(features[0]))


class ToySeg(nn.Module):
    def __init__(self, cin: int = 3, width: int = 4, classes: int = 3, bn: bool = False) -> None:
        super().__init__()
        self.body = Body(cin, width, bn)
        self.head = Head(width, classes, bn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def seg_task(seed: int = 0, n: int = 3, size: int = 6, classes: int = 3, dtype=torch.float32):
    from landcover.tasks.task import Task

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2 * n, 3, size, size, generator=g, dtype=dtype) + seed
    y = torch.randint(0, classes, (2 * n, size, size), generator=g)
    y[0, 0, :] = 255
    return Task(x[:n], y[:n], x[n:], y[n:])
