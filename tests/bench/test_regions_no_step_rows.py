"""``bench regions``' no-step rows of a Proto-MAML learner: prototypes (0 steps), unadapted."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from landcover.bench.regions import TARGET
from landcover.bench.regions.core import RegionsSettings
from landcover.bench.regions.report import target_checks, write_regions_report
from landcover.evaluation.fewshot import Method, evaluate_fewshot
from landcover.evaluation.no_step_rows import PROTOTYPES, UNADAPTED, no_step_methods
from landcover.meta.registry import build_learner
from landcover.models import build_model
from landcover.tasks.task import Task

CLASSES = 3


def _model() -> nn.Module:
    torch.manual_seed(0)
    return build_model("small_unet", 3, CLASSES, width=4, depth=1, norm="none").double()


def _source(k: int, i: int) -> Task:
    """Inputs that tell the class, noisy; every class in every support (ProtoNet needs it)."""
    g = torch.Generator().manual_seed(100 * k + i)
    y = torch.randint(0, CLASSES, (k + 2, 8, 8), generator=g)
    y[:, 0, :CLASSES] = torch.arange(CLASSES)
    x = 2 * nn.functional.one_hot(y, CLASSES).permute(0, 3, 1, 2).double()
    x = x + torch.randn(x.shape, generator=g, dtype=torch.float64)
    return Task(x[:k], y[:k], x[k:], y[k:], {"region": f"r{i}"})


def _evaluate():
    ce = nn.CrossEntropyLoss(ignore_index=255)
    model = _model()
    maml = build_learner("mamlpp", model, ce, inner_lr=0.3, steps=2, proto_init=True, bn="none")
    methods = {"MAML++": Method(maml, 2), **no_step_methods(maml)}
    methods["protonet"] = Method(build_learner("protonet", model, ce, num_classes=CLASSES))
    # the report's reference row: the same network fine-tuned on the support
    methods["pretrain+finetune"] = Method(build_learner("pretrain", model, ce, steps=3))
    result = evaluate_fewshot(methods, _source, num_classes=CLASSES, shots=[1, 2],
                              tasks_per_shot=3, keep_examples=1, progress=False)  # fmt: skip
    return maml, result


def test_prototype_row_is_the_prototypical_network_and_unadapted_uses_no_support() -> None:
    maml, result = _evaluate()
    assert list(result.scores)[:3] == ["MAML++", PROTOTYPES, UNADAPTED]
    # closed form: w = 2c, b = -|c|² ranks classes as ProtoNet's -|e - c|² on the same
    # embedding, so every task's scores are the same
    for k in (1, 2):
        for score in ("miou", "accuracy", "kappa"):
            assert result.scores[PROTOTYPES][k][score] == pytest.approx(
                result.scores["protonet"][k][score], abs=1e-12
            )
    # unadapted: the meta-model, whatever the support (here the same map on every task)
    one, two = _source(1, 0), _source(2, 1)
    a = maml.adapt(one.support_x, one.support_y, steps=0, prototypes=False)
    b = maml.adapt(two.support_x, two.support_y, steps=0, prototypes=False)
    torch.testing.assert_close(maml.predict(a, one.query_x), maml.predict(b, one.query_x))
    assert result.scores[UNADAPTED] != result.scores[PROTOTYPES]


def test_plain_maml_keeps_one_unadapted_row() -> None:
    learner = build_learner("maml", _model(), nn.CrossEntropyLoss(), steps=1)
    rows = no_step_methods(learner)
    assert list(rows) == [UNADAPTED] and rows[UNADAPTED].adapt_options == {}


def test_report_and_metrics_carry_the_prototype_row_and_its_margin(tmp_path: Path) -> None:
    _, result = _evaluate()
    info = {"test": ["r"], "val": ["v"], "choices": {}, "timings": {"t": 1.0}}
    runs = [{"seed": 0, "fold": 0, "result": result, "info": info}]
    scheme = SimpleNamespace(names=["a", "b", "c"], colors=[(0, 0, 0)] * 3, ignore_index=255)
    write_regions_report(
        result, runs, tmp_path, scheme=scheme, settings=asdict(RegionsSettings()), seeds=[0],
        wall_seconds=1.0, root="tiny", target=TARGET,
    )  # fmt: skip
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert f"| MAML++ − {PROTOTYPES} |" in md and f"| MAML++ − {UNADAPTED} |" in md
    assert f"Row `{PROTOTYPES}`: Proto-MAML's prototype classifier" in md
    assert f"Row `{UNADAPTED}`: the meta-learned model with no adaptation" in md
    metrics = json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8"))
    margin = metrics["paired_miou"][PROTOTYPES]
    assert set(margin) == {"1", "2"}
    assert margin["1"]["mean"] == pytest.approx(result.paired("MAML++", PROTOTYPES)[1]["mean"])
    checks = {c["check"]: c for c in metrics["target"]["checks"]}
    worst = min(result.paired("MAML++", PROTOTYPES)[k]["mean"] for k in (1, 2))
    check = checks[f"MAML++ − {PROTOTYPES} at every shot count >= 0"]
    assert check["value"] == pytest.approx(worst) and check["met"] == (worst >= 0)
    assert f"MAML++ − {UNADAPTED} at every shot count >= 0" in checks
    assert [c["check"] for c in target_checks(result, TARGET)] == list(checks)
