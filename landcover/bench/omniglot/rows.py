"""Rows, published anchors and budgets of ``landcover bench omniglot``.

:data:`ROWS` is a plain module-level list (append a :class:`Row` to add a learner);
:data:`ANCHORS` holds the published accuracies on the full background set and
:data:`BUDGETS` the ``full`` and ``quick`` work sizes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from landcover.bench.omniglot.core import Budget

MAX_WAY = 20
DEFAULT_DATA = Path(__file__).resolve().parents[4] / "shared" / "data" / "omniglot"
DATA_FILES = ("images_background_small1.zip", "images_background_small2.zip")


@dataclass(frozen=True)
class Row:
    """One learner of the benchmark.

    Attributes:
        name: Row id (file names, JSON).
        label: Display name.
        family: ``non-parametric``, ``closed-form``, ``black-box``, ``optimization`` or
            ``baseline``.
        learner: A :mod:`landcover.meta.registry` name, or ``pretrain_head`` /
            ``pretrain_nn`` for the baselines.
        options: Learner options (JSON-serialisable).
        backbone: ``embedding`` (Conv-4 without head) or ``classifier`` (Conv-4 with a
            ``MAX_WAY`` head).
        lr: Outer (Adam) learning rate.
        meta_batch: Tasks per meta-iteration (``None``: the budget's).
        train_settings: (way, shot) settings of training tasks (``None``: all four).
        train_scale: Multiplier of the budget's training caps for this row.
        augment: Jitter every training image with
            :class:`~landcover.tasks.omniglot_augment.AffineJitter` (test images never).
    """

    name: str
    label: str
    family: str
    learner: str
    options: dict[str, Any] = field(default_factory=dict)
    backbone: str = "embedding"
    lr: float = 1e-3
    meta_batch: int | None = None
    train_settings: tuple[tuple[int, int], ...] | None = None
    train_scale: float = 1.0
    augment: bool = False


_OPT = "optimization"
#: Metric learners train on 20-way tasks only (Snell et al.: higher way in training helps).
_HIGH_WAY = ((20, 1), (20, 5))
#: SNAIL leaves its initial plateau sooner on 5-way tasks: drawn twice as often as 20-way.
_FIVE_WAY_FIRST = ((5, 1), (5, 5), (5, 1), (5, 5), (20, 1), (20, 5))
#: The benchmark's rows, in table order (append to add a learner).
ROWS: list[Row] = [
    Row(
        "protonet",
        "ProtoNets",
        "non-parametric",
        "protonet",
        train_settings=_HIGH_WAY,
        train_scale=7.5,
        augment=True,
    ),
    Row(
        "ridge",
        "R2-D2 ridge head",
        "closed-form",
        "ridge",
        train_settings=_HIGH_WAY,
        train_scale=2.0,
        augment=True,
    ),
    Row("svm", "MetaOptNet-SVM", "closed-form", "metaoptnet_svm", {"c": 0.1, "ridge": 1.0}),
    Row("cnp", "CNP", "black-box", "cnp", {"max_way": MAX_WAY}),
    Row("mann", "MANN (LSTM+LRUA)", "black-box", "mann", {"max_way": MAX_WAY}),
    Row(
        "snail",
        "SNAIL",
        "black-box",
        "snail",
        {"max_way": MAX_WAY, "max_length": 101},
        train_settings=_FIVE_WAY_FIRST,
        train_scale=3.0,
    ),
    Row("metanet", "Meta Networks", "black-box", "metanet", {"max_way": MAX_WAY}),
    Row("maml", "MAML", _OPT, "maml", {"inner_lr": 0.4, "steps": 1}, "classifier"),
    Row("fomaml", "FOMAML", _OPT, "fomaml", {"inner_lr": 0.4, "steps": 1}, "classifier"),
    Row(
        "mamlpp",
        "MAML++",
        _OPT,
        "mamlpp",
        {"inner_lr": 0.4, "steps": 2, "msl_epochs": 3, "first_order_epochs": 2},
        "classifier",
    ),
    Row("reptile", "Reptile", _OPT, "reptile", {"inner_lr": 0.1, "steps": 3}, "classifier"),
    Row("metasgd", "Meta-SGD", _OPT, "metasgd", {"inner_lr": 0.4, "steps": 1}, "classifier"),
    Row("anil", "ANIL", _OPT, "anil", {"inner_lr": 0.4, "steps": 3}, "classifier"),
    Row("pretrain_head", "Pretrain + new head", "baseline", "pretrain_head"),
    Row("pretrain_nn", "Pretrain + 1-NN", "baseline", "pretrain_nn"),
]

#: Published accuracies on the full Omniglot background set (the 1200/423-character
#: split), in %: (5-way 1-shot, 5-way 5-shot, 20-way 1-shot, 20-way 5-shot).
ANCHORS: dict[str, dict[str, float]] = {
    "maml": {"5w1s": 98.7, "5w5s": 99.9, "20w1s": 95.8, "20w5s": 98.9},
    "mamlpp": {"5w1s": 99.47, "5w5s": 99.93, "20w1s": 97.65, "20w5s": 99.33},
    "protonet": {"5w1s": 98.8, "5w5s": 99.7, "20w1s": 96.0, "20w5s": 98.9},
    "metasgd": {"5w1s": 99.53, "5w5s": 99.93, "20w1s": 95.93, "20w5s": 98.97},
    "snail": {"5w1s": 99.07, "5w5s": 99.78, "20w1s": 97.64, "20w5s": 99.36},
    "mann": {"5w1s": 82.8, "5w5s": 94.9},
    "cnp": {"5w1s": 95.3, "5w5s": 98.5, "20w1s": 89.9, "20w5s": 96.8},
    "metanet": {"5w1s": 98.95, "20w1s": 97.0},
}

#: Budgets: ``full`` is sized for <= 45 minutes with ``--jobs 2`` on 2 otherwise idle CPU
#: cores (training capped at 120 CPU-seconds per learner times the row's ``train_scale``:
#: ProtoNets 900, SNAIL 360, ridge 240), ``quick`` for < 2 minutes.
BUDGETS: dict[str, Budget] = {
    "full": Budget(
        train_seconds=120,
        train_wall_seconds=360,
        max_iters=5000,
        meta_batch=2,
        train_query=5,
        eval_episodes=600,
        eval_query=2,
    ),
    "quick": Budget(
        train_seconds=2,
        train_wall_seconds=6,
        max_iters=15,
        meta_batch=1,
        train_query=2,
        eval_episodes=12,
        eval_query=1,
        pretrain_batch=64,
    ),
}

#: Meta-iterations of each row's paper on Omniglot, for ``--budget paper`` (GPU runs).
#: Finn et al. 2017 (MAML, FOMAML; Meta-SGD, Li et al. 2017, and ANIL, Raghu et al. 2020,
#: follow MAML's schedule): 60,000; Antoniou et al. 2019 (MAML++): 150 epochs x 500;
#: Nichol et al. 2018 (Reptile): 100,000; Santoro et al. 2016 (MANN): 100,000 episodes;
#: Snell et al. 2017 (ProtoNets) and Bertinetto et al. 2019 (R2-D2): 60,000 episodes;
#: Mishra et al. 2018 (SNAIL): 40,000; others: 60,000. Each row is also capped at 30
#: wall-minutes (the budget's ``train_wall_seconds``).
PAPER_ITERATIONS: dict[str, int] = {
    "maml": 60_000,
    "fomaml": 60_000,
    "metasgd": 60_000,
    "anil": 60_000,
    "mamlpp": 75_000,
    "reptile": 100_000,
    "mann": 100_000,
    "protonet": 60_000,
    "ridge": 60_000,
    "snail": 40_000,
}

#: ``paper``: every row for its paper's iterations (:data:`PAPER_ITERATIONS`), meta-batch
#: 32 as in MAML's 5-way Omniglot runs, 15 queries per class, 30 minutes per learner.
BUDGETS["paper"] = Budget(
    train_seconds=float("inf"),
    train_wall_seconds=1800,
    max_iters=60_000,
    meta_batch=32,
    train_query=15,
    eval_episodes=600,
    eval_query=5,
    pretrain_batch=256,
)
