"""Sinusoid regression tasks (Finn, Abbeel & Levine 2017, section 5.1).

A task is ``y = A sin(x - phi)`` with amplitude ``A ~ U[0.1, 5]``, phase
``phi ~ U[0, pi]`` and inputs ``x ~ U[-5, 5]``; ``K`` labeled points form the support set
and the query set is scored by mean squared error. Batches are sampled as stacked tensors
(``(T, K, 1)``) so a meta-batch can be vectorised over tasks; :meth:`SinusoidSampler.tasks`
gives the same data as a list of :class:`~landcover.tasks.task.Task`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from landcover.tasks.task import Task

AMPLITUDE = (0.1, 5.0)
PHASE = (0.0, math.pi)
X_RANGE = (-5.0, 5.0)


@dataclass
class SinusoidBatch:
    """``T`` sinusoid tasks stacked on dim 0.

    Attributes:
        support_x: ``(T, K, 1)`` inputs.
        support_y: ``(T, K, 1)`` targets.
        query_x: ``(T, Q, 1)`` inputs.
        query_y: ``(T, Q, 1)`` targets.
        amplitude: ``(T,)`` amplitudes.
        phase: ``(T,)`` phases.
    """

    support_x: Tensor
    support_y: Tensor
    query_x: Tensor
    query_y: Tensor
    amplitude: Tensor
    phase: Tensor

    def tasks(self) -> list[Task]:
        """The batch as individual tasks (with amplitude and phase in ``meta``)."""
        return [
            Task(
                self.support_x[i],
                self.support_y[i],
                self.query_x[i],
                self.query_y[i],
                {"amplitude": float(self.amplitude[i]), "phase": float(self.phase[i])},
            )
            for i in range(self.support_x.shape[0])
        ]


def sinusoid(x: Tensor, amplitude: Tensor, phase: Tensor) -> Tensor:
    """``amplitude * sin(x - phase)`` with per-task parameters broadcast over points."""
    return amplitude.view(-1, 1, 1) * torch.sin(x - phase.view(-1, 1, 1))


class SinusoidSampler:
    """Samples sinusoid tasks with a private random generator.

    Args:
        k_support: Support points per task (``K``).
        k_query: Query points per task.
        seed: Seed of the generator (test tasks use a seed distinct from training).
        device: Device of the sampled tensors.
    """

    def __init__(
        self, k_support: int, k_query: int = 100, *, seed: int = 0, device: str = "cpu"
    ) -> None:
        if k_support < 1 or k_query < 1:
            raise ValueError(f"k_support and k_query must be >= 1; got {k_support}, {k_query}")
        self.k_support = int(k_support)
        self.k_query = int(k_query)
        self.device = device
        self.generator = torch.Generator().manual_seed(int(seed))

    def _uniform(self, shape: tuple[int, ...], low: float, high: float) -> Tensor:
        return low + (high - low) * torch.rand(shape, generator=self.generator)

    def sample(self, n_tasks: int) -> SinusoidBatch:
        """Sample ``n_tasks`` tasks."""
        if n_tasks < 1:
            raise ValueError(f"n_tasks must be >= 1; got {n_tasks}")
        amp = self._uniform((n_tasks,), *AMPLITUDE)
        phase = self._uniform((n_tasks,), *PHASE)
        sx = self._uniform((n_tasks, self.k_support, 1), *X_RANGE)
        qx = self._uniform((n_tasks, self.k_query, 1), *X_RANGE)
        batch = SinusoidBatch(
            sx, sinusoid(sx, amp, phase), qx, sinusoid(qx, amp, phase), amp, phase
        )
        if self.device != "cpu":
            for name in ("support_x", "support_y", "query_x", "query_y", "amplitude", "phase"):
                setattr(batch, name, getattr(batch, name).to(self.device))
        return batch

    def tasks(self, n_tasks: int) -> list[Task]:
        """Sample ``n_tasks`` tasks as :class:`~landcover.tasks.task.Task` objects."""
        return self.sample(n_tasks).tasks()
