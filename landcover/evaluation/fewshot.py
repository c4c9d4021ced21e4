"""Few-shot evaluation: k-shot tasks on held-out regions, every method on the same tasks.

The protocol follows Rußwurm et al. (2020), "Meta-Learning for Few-Shot Land Cover
Classification" (CVPR EarthVision): for each number of shots k, many tasks are sampled from
regions never seen in training; every method adapts on the task's k labeled support tiles
and is scored on its query tiles (mIoU, overall accuracy, Cohen's kappa). Because all
methods see exactly the same tasks, differences are reported as paired intervals.

A method is any :class:`~landcover.meta.protocol.Learner` (MAML++, the pretrained model
with fine-tuning, training from scratch, ...) with the number of inner steps it uses at test
time; the evaluation only calls ``adapt`` and ``predict``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor
from tqdm.auto import tqdm

from landcover.evaluation.metrics import SCORE_NAMES, mean_interval, paired_difference
from landcover.meta.protocol import Learner
from landcover.tasks.scoring import adapt_and_predict, score_task
from landcover.tasks.task import Task

__all__ = [
    "DEFAULT_SHOTS",
    "FewShotResult",
    "Method",
    "TaskSource",
    "adapt_and_predict",
    "evaluate_fewshot",
    "evaluate_test_split",
    "score_task",
]

#: ``(shots, task index) -> Task``: the same arguments must give the same task.
TaskSource = Callable[[int, int], Task]

#: Default numbers of shots, as in the issue.
DEFAULT_SHOTS: tuple[int, ...] = (1, 2, 5, 10)


@dataclass
class Method:
    """A learner under evaluation.

    Attributes:
        learner: The learner (its ``adapt`` and ``predict`` are all that is used).
        steps: Inner steps at test time (``None``: the learner's default), or one count per
            shot count (``{shots: steps}``, e.g. chosen per shot count on validation tasks).
        adapt_options: Further keyword arguments of ``learner.adapt`` (e.g.
            ``{"prototypes": False}``: a Proto-MAML model without its support prototypes).
    """

    learner: Learner
    steps: int | dict[int, int] | None = None
    adapt_options: dict[str, Any] = field(default_factory=dict)

    def steps_for(self, shots: int) -> int | None:
        """The inner steps used on a task with ``shots`` support tiles."""
        if isinstance(self.steps, dict):
            return self.steps[int(shots)]
        return self.steps


@dataclass
class FewShotResult:
    """Per-task scores of every method, and a few query maps for pictures.

    Attributes:
        scores: ``scores[method][shots][score name]`` -> one value per task (same task order
            for every method).
        examples: Up to ``keep_examples`` query tiles per shot count: ``{"shots", "task",
            "image", "truth", "maps": {method: class map}}`` (CPU tensors).
        meta: Free-form settings (number of tasks, regions, seeds) for the report.
    """

    scores: dict[str, dict[int, dict[str, list[float]]]] = field(default_factory=dict)
    examples: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def methods(self) -> list[str]:
        """Method names in evaluation order."""
        return list(self.scores)

    @property
    def shots(self) -> list[int]:
        """Shot counts evaluated."""
        first = next(iter(self.scores.values()), {})
        return sorted(first)

    def summary(self, confidence: float = 0.95) -> dict[str, dict[int, dict[str, Any]]]:
        """Mean and interval per method, shot count and score."""
        return {
            m: {
                k: {s: mean_interval(v, confidence).as_dict() for s, v in by_score.items()}
                for k, by_score in by_shot.items()
            }
            for m, by_shot in self.scores.items()
        }

    def paired(
        self, method: str, reference: str, score: str = "miou", confidence: float = 0.95
    ) -> dict[int, dict[str, float | int]]:
        """Paired difference ``method - reference`` per shot count (same tasks)."""
        for name in (method, reference):
            if name not in self.scores:
                raise KeyError(f"unknown method {name!r}; evaluated: {self.methods}")
        return {
            k: paired_difference(
                self.scores[method][k][score], self.scores[reference][k][score], confidence
            ).as_dict()
            for k in self.shots
        }

    def to_json(self) -> dict[str, Any]:
        """JSON-friendly form (per-task scores, summary, meta; no tensors)."""
        return {
            "meta": self.meta,
            "summary": {m: {str(k): v for k, v in d.items()} for m, d in self.summary().items()},
            "per_task": {m: {str(k): v for k, v in d.items()} for m, d in self.scores.items()},
        }


def evaluate_fewshot(
    methods: Mapping[str, Method],
    source: TaskSource,
    *,
    num_classes: int,
    shots: Sequence[int] = DEFAULT_SHOTS,
    tasks_per_shot: int = 100,
    ignore_index: int = 255,
    keep_examples: int = 2,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> FewShotResult:
    """Score every method on the same sampled tasks for each number of shots.

    Args:
        methods: ``{name: Method}``; names become rows of the report.
        source: Task sampler on held-out regions (deterministic in its arguments).
        num_classes: Number of classes of the scheme.
        shots: Numbers of labeled support tiles.
        tasks_per_shot: Tasks sampled per shot count.
        ignore_index: Value of unlabeled pixels.
        keep_examples: Query tiles kept per shot count for the side-by-side maps.
        device: Where adaptation runs.
        progress: Show a tqdm bar.

    Returns:
        The per-task scores and examples.
    """
    if not methods:
        raise ValueError("evaluate_fewshot needs at least one method")
    if not shots or any(int(k) < 1 for k in shots):
        raise ValueError(f"shots must be positive integers; got {list(shots)}")
    if tasks_per_shot < 1:
        raise ValueError(f"tasks_per_shot must be at least 1; got {tasks_per_shot}")
    for method in methods.values():
        method.learner.to(device).eval()
    result = FewShotResult(
        scores={m: {int(k): {s: [] for s in SCORE_NAMES} for k in shots} for m in methods},
        meta={"tasks_per_shot": tasks_per_shot, "shots": [int(k) for k in shots]},
    )
    total = len(shots) * tasks_per_shot
    bar = tqdm(total=total, desc="few-shot evaluation", unit="task", disable=not progress)
    for k in shots:
        for i in range(tasks_per_shot):
            task = source(int(k), i).to(device)
            maps: dict[str, Tensor] = {}
            for name, method in methods.items():
                scores, classes = score_task(
                    method.learner, task, method.steps_for(int(k)), num_classes, ignore_index,
                    adapt_options=method.adapt_options,
                )  # fmt: skip
                for s, v in scores.items():
                    result.scores[name][int(k)][s].append(v)
                maps[name] = classes[0].cpu()
            if i < keep_examples:
                result.examples.append(
                    {
                        "shots": int(k),
                        "task": i,
                        "region": task.meta.get("region", ""),
                        "image": task.query_x[0].cpu(),
                        "truth": task.query_y[0].cpu(),
                        "maps": maps,
                    }
                )
            bar.update(1)
    bar.close()
    return result


class SplitTasks(Protocol):
    """What :func:`evaluate_test_split` reads of a data module (``RegionTaskDataModule``)."""

    @property
    def num_classes(self) -> int:
        """Number of classes of the scheme."""
        ...

    @property
    def ignore_index(self) -> int:
        """Value of unlabeled pixels."""
        ...

    def eval_task(self, split: str, index: int, shots: int | None = None) -> Task:
        """The deterministic evaluation task ``index`` of ``split`` with ``shots`` shots."""
        ...


def evaluate_test_split(
    methods: Mapping[str, Method],
    dm: SplitTasks,
    *,
    shots: Sequence[int],
    tasks_per_shot: int,
    progress: bool = True,
    device: torch.device | str = "cpu",
) -> FewShotResult:
    """:func:`evaluate_fewshot` on a data module's ``"test"`` tasks, with its classes.

    Args:
        methods: ``{name: Method}``; names become rows of the report.
        dm: The data module whose held-out test regions supply the tasks.
        shots: Numbers of labeled support tiles.
        tasks_per_shot: Tasks sampled per shot count.
        progress: Show a tqdm bar.
        device: Where adaptation and prediction run.

    Returns:
        The per-task scores and examples.
    """
    return evaluate_fewshot(
        methods,
        lambda k, i: dm.eval_task("test", i, shots=k),
        num_classes=dm.num_classes,
        shots=shots,
        tasks_per_shot=tasks_per_shot,
        ignore_index=dm.ignore_index,
        progress=progress,
        device=device,
    )
