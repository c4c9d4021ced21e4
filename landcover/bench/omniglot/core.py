"""Training and evaluation behind ``landcover bench omniglot``.

* :func:`meta_train`: one training run per learner, with tasks drawn from a **mix** of the
  four evaluated settings (5/20-way x 1/5-shot, one setting per meta-batch), so one
  model serves every setting (the CPU trade-off: four times fewer trainings than one
  per setting, at some cost against setting-specific training). A head of ``max_way``
  outputs serves 5-way tasks through its first five outputs (``Conv4.set_active_way``).
* The non-episodic baselines (pretraining, new head, nearest neighbour) are in
  :mod:`landcover.bench.omniglot.baselines`.
* :func:`evaluate`: the same seeded episodes for every learner; 95% intervals are
  ``1.96 * std / sqrt(episodes)`` of the per-episode accuracies. Learners that read images
  only through an ``encoder`` (prototype, closed-form, black-box learners, baselines) are
  evaluated on embeddings computed once per image (BatchNorm in eval mode): identical
  results, a fraction of the cost. Optimization-based learners adapt the whole network on
  every episode, with batch statistics in BatchNorm (see :func:`_null_table`).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from landcover.meta.protocol import Learner
from landcover.tasks.omniglot import EpisodeSampler, OmniglotSet
from landcover.tasks.task import Task

#: (way, shot) settings of the benchmark.
SETTINGS: tuple[tuple[int, int], ...] = ((5, 1), (5, 5), (20, 1), (20, 5))


@dataclass
class Budget:
    """How much work one benchmark run does.

    Attributes:
        train_seconds: CPU-seconds cap of one learner's training, measured with
            ``time.process_time`` (all threads of the process), so the work done does not
            depend on what else runs on the machine.
        train_wall_seconds: Wall-clock safety cap of one learner's training.
        max_iters: Meta-iterations (or pretraining steps) cap.
        meta_batch: Tasks per meta-iteration.
        train_query: Queries per class of training tasks.
        eval_episodes: Test episodes per setting.
        eval_query: Queries per class of test episodes.
        pretrain_batch: Batch size of the pretraining baseline.
    """

    train_seconds: float
    train_wall_seconds: float
    max_iters: int
    meta_batch: int
    train_query: int
    eval_episodes: int
    eval_query: int
    pretrain_batch: int = 128


def mean_ci(values: Sequence[float]) -> tuple[float, float]:
    """Mean and 95% half-width ``1.96 * std / sqrt(n)`` (0 for a single value)."""
    t = torch.tensor(list(values), dtype=torch.float64)
    if len(t) < 2:
        return float(t.mean()), 0.0
    return float(t.mean()), float(1.96 * t.std(unbiased=True) / math.sqrt(len(t)))


def progress_of(budget: Budget, it: int, start: float, cpu: float) -> float:
    """Fraction of the training budget used: the largest of its three caps' fractions."""
    return max(
        it / max(budget.max_iters, 1),
        (time.process_time() - cpu) / budget.train_seconds,
        (time.monotonic() - start) / budget.train_wall_seconds,
    )


def cosine_rate(base: float, progress: float, floor: float = 0.01) -> float:
    """Cosine annealing from ``base`` to ``floor * base`` over the budget's progress.

    The budget is in CPU-seconds, so the number of iterations is not known in advance:
    annealing over the fraction of the budget used (not over ``max_iters``) makes a
    short run end at a small rate too.
    """
    p = min(max(progress, 0.0), 1.0)
    return base * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * p)))


def set_way(model: nn.Module, n_way: int) -> None:
    """Restrict a ``max_way`` classifier to ``n_way`` outputs when it supports it."""
    setter = getattr(model, "set_active_way", None)
    if callable(setter) and getattr(model, "num_classes", 0):
        setter(n_way)


def meta_train(
    learner: Learner,
    model: nn.Module,
    data: OmniglotSet,
    budget: Budget,
    *,
    lr: float = 1e-3,
    seed: int = 0,
    settings: Sequence[tuple[int, int]] = SETTINGS,
    desc: str = "train",
    augment: Callable[[Tensor, torch.Generator], Tensor] | None = None,
) -> dict[str, Any]:
    """Meta-train ``learner`` with Adam on tasks from a mix of ``settings``.

    ``learner.on_epoch_start`` is called every 100 iterations (a "meta-epoch" for the
    annealing schedules of MAML++), the outer rate follows :func:`cosine_rate` over the
    fraction of the budget used and gradients are clipped to norm 10. ``augment(images,
    generator)`` (e.g. :class:`~landcover.tasks.omniglot_augment.AffineJitter`), when
    given, transforms the support and query images of every training episode.

    Returns:
        Iterations, seconds and the mean query loss / accuracy of the last 50 iterations.
    """
    torch.manual_seed(seed)
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    sampler = EpisodeSampler(data.labels, seed)
    device = _device_of(learner)
    learner.train()
    opt = torch.optim.Adam(learner.parameters(), lr=lr)
    start, cpu, it, recent = time.monotonic(), time.process_time(), 0, []
    bar = tqdm(total=budget.max_iters, desc=desc, mininterval=2.0, leave=False)
    while (progress := progress_of(budget, it, start, cpu)) < 1.0:
        for group in opt.param_groups:
            group["lr"] = cosine_rate(lr, progress)
        if it % 100 == 0:
            learner.on_epoch_start(it // 100)
        way, shot = settings[rng.randrange(len(settings))]
        set_way(model, way)
        tasks = [
            sampler.sample(way, shot, budget.train_query).task(data.images).to(device)
            for _ in range(budget.meta_batch)
        ]
        if augment is not None:  # fresh jitter of every image of every training episode
            tasks = [
                replace(t, support_x=augment(t.support_x, gen), query_x=augment(t.query_x, gen))
                for t in tasks
            ]
        opt.zero_grad(set_to_none=True)
        stats = learner.meta_backward(tasks)
        torch.nn.utils.clip_grad_norm_(learner.parameters(), 10.0)
        opt.step()
        recent = [
            *recent[-49:],
            (stats.get("query_loss", float("nan")), stats.get("accuracy", float("nan"))),
        ]
        it += 1
        bar.update(1)
        if it % 20 == 0:
            bar.set_postfix(loss=f"{recent[-1][0]:.3f}", way=way, shot=shot)
    bar.close()
    set_way(model, 0)
    return {
        "iterations": it,
        "seconds": round(time.monotonic() - start, 1),
        "cpu_seconds": round(time.process_time() - cpu, 1),
        "settings": [f"{w}w{s}s" for w, s in settings],
        "final_loss": sum(r[0] for r in recent) / max(len(recent), 1),
        "final_train_accuracy": sum(r[1] for r in recent) / max(len(recent), 1),
    }


def _device_of(learner: Learner) -> torch.device:
    """The device of the learner's parameters (CPU for a parameter-free learner)."""
    first = next(iter(learner.parameters()), None)
    return first.device if first is not None else torch.device("cpu")


def uses_encoder_only(learner: Learner) -> bool:
    """Whether the learner reads images only through ``learner.encoder`` (fast path)."""
    return isinstance(getattr(learner, "encoder", None), nn.Module) and hasattr(learner, "embed")


@contextmanager
def embedded(learner: Learner, images: Tensor) -> Iterator[Tensor]:
    """Embed ``images`` once (eval mode) and run the learner on embeddings meanwhile."""
    encoder = learner.encoder
    learner.eval()
    with torch.no_grad():
        embed = encoder.embed if hasattr(encoder, "embed") else encoder
        device = _device_of(learner)
        table = torch.cat([embed(chunk.to(device)) for chunk in images.split(512)])
    learner.encoder = nn.Identity()
    try:
        yield table
    finally:
        learner.encoder = encoder
        learner.train()


def _episode_accuracy(learner: Learner, model: nn.Module, task: Task, n_way: int) -> float:
    set_way(model, n_way)
    state = learner.adapt(task.support_x, task.support_y)
    with torch.no_grad():
        logits = learner.predict(state, task.query_x)
    return float((logits.argmax(1) == task.query_y).float().mean())


def evaluate(
    learner: Learner,
    model: nn.Module,
    data: OmniglotSet,
    budget: Budget,
    *,
    seed: int = 1234,
    settings: Sequence[tuple[int, int]] = SETTINGS,
    desc: str = "eval",
    on_setting: Callable[[tuple[int, int], dict[str, float]], None] | None = None,
) -> dict[str, dict[str, float]]:
    """Accuracy with a 95% interval per setting on the same seeded episodes for all.

    Returns:
        ``{"5w1s": {"accuracy", "ci95", "episodes", "seconds"}, ...}``.
    """
    results: dict[str, dict[str, float]] = {}
    device = _device_of(learner)
    fast = uses_encoder_only(learner)
    ctx = embedded(learner, data.images) if fast else _null_table(learner, data.images)
    with ctx as table:
        for i, (way, shot) in enumerate(settings):
            sampler = EpisodeSampler(data.labels, seed + 7919 * i)
            start, cpu, accs = time.monotonic(), time.process_time(), []
            for _ in tqdm(
                range(budget.eval_episodes),
                desc=f"{desc} {way}w{shot}s",
                mininterval=2.0,
                leave=False,
            ):
                task = sampler.sample(way, shot, budget.eval_query).task(table).to(device)
                accs.append(_episode_accuracy(learner, model, task, way))
            mean, ci = mean_ci(accs)
            res = {
                "accuracy": mean,
                "ci95": ci,
                "episodes": len(accs),
                "seconds": round(time.monotonic() - start, 1),
                "cpu_seconds": round(time.process_time() - cpu, 1),
            }
            results[f"{way}w{shot}s"] = res
            if on_setting is not None:
                on_setting((way, shot), res)
    set_way(model, 0)
    return results


@contextmanager
def _null_table(learner: Learner, images: Tensor) -> Iterator[Tensor]:
    """Images as they are; BatchNorm normalises with the statistics of each batch.

    Optimization-based learners are evaluated as they are trained, with batch statistics
    (transductive), as MAML and MAML++'s reference code do at test time; for the per-step
    BatchNorm of MAML++ this means training mode, so every buffer is restored afterwards
    and evaluation leaves the learner unchanged.
    """
    saved = {n: b.detach().clone() for n, b in learner.named_buffers()}
    learner.train()
    try:
        yield images
    finally:
        with torch.no_grad():
            for n, b in learner.named_buffers():
                b.copy_(saved[n])


def evaluate_runs(learner: Learner, model: nn.Module, runs: Sequence[Any]) -> dict[str, float]:
    """Error rate over Lake et al.'s one-shot runs (20-way 1-shot each)."""
    correct = total = 0
    per_run = []
    device = _device_of(learner)
    for run in runs:
        task = run.task().to(device)
        if uses_encoder_only(learner):
            with embedded(learner, torch.cat([task.support_x, task.query_x])) as table:
                n = len(task.support_x)
                task = Task(table[:n], task.support_y, table[n:], task.query_y)
                acc = _episode_accuracy(learner, model, task, len(run.train_images))
        else:
            with _null_table(learner, task.support_x):
                acc = _episode_accuracy(learner, model, task, len(run.train_images))
        per_run.append(1.0 - acc)
        correct += acc * len(task.query_y)
        total += len(task.query_y)
    set_way(model, 0)
    return {
        "error_rate": 1.0 - correct / max(total, 1),
        "runs": len(per_run),
        "per_run_error": per_run,
    }
