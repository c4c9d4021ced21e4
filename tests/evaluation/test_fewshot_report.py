import json

import pytest
import torch
from PIL import Image
from torch import nn

from landcover.evaluation.fewshot import Method, adapt_and_predict, evaluate_fewshot
from landcover.evaluation.metrics import segmentation_scores
from landcover.evaluation.report import write_report
from landcover.meta.registry import build_learner
from landcover.models import build_model
from landcover.tasks.task import Task


def _learner(name="maml", **opts):
    torch.manual_seed(0)
    model = build_model("small_unet", 3, 3, width=8, depth=0, norm="none")
    return build_learner(name, model, nn.CrossEntropyLoss(ignore_index=255), **opts)


def _source(k: int, i: int) -> Task:
    g = torch.Generator().manual_seed(100 * k + i)
    y = torch.randint(0, 3, (k + 2, 8, 8), generator=g)
    x = 3 * torch.nn.functional.one_hot(y, 3).permute(0, 3, 1, 2).float()  # x says y
    x = x + 0.3 * torch.randn(x.shape, generator=g)
    return Task(x[:k], y[:k], x[k:], y[k:], {"region": f"r{i}"})


def test_adaptation_works_under_no_grad():
    learner = _learner(steps=2, inner_lr=0.5)
    task = _source(2, 0)
    with torch.no_grad():
        logits, state = adapt_and_predict(learner, task, steps=2)
    assert logits.shape == (2, 3, 8, 8)
    params = learner.model.named_parameters()
    changed = [n for n, p in params if not torch.equal(state.params[n], p)]
    assert changed  # the inner loop really moved the weights


def test_every_method_scored_on_the_same_tasks():
    adapted, frozen = _learner(steps=10, inner_lr=0.5), _learner(steps=0)
    methods = {"adapted": Method(adapted, 10), "frozen": Method(frozen, 0)}
    res = evaluate_fewshot(methods, _source, num_classes=3, shots=[1, 2], tasks_per_shot=3,
                           keep_examples=1, progress=False)  # fmt: skip
    assert res.methods == ["adapted", "frozen"] and res.shots == [1, 2]
    # per-task scores are the scores of that very task, recomputed independently
    task = _source(2, 1)
    logits, _ = adapt_and_predict(frozen, task, 0)
    ref = segmentation_scores(logits.argmax(1), task.query_y, 3)
    assert res.scores["frozen"][2]["miou"][1] == pytest.approx(ref["miou"])
    assert len(res.examples) == 2 and set(res.examples[0]["maps"]) == {"adapted", "frozen"}
    # adaptation on inputs that reveal the class must beat the frozen random network
    gap = res.paired("adapted", "frozen")
    assert gap[2]["mean"] > 0
    d = [a - b for a, b in zip(res.scores["adapted"][1]["miou"], res.scores["frozen"][1]["miou"])]
    assert gap[1]["mean"] == pytest.approx(sum(d) / 3)
    with pytest.raises(KeyError, match="unknown method"):
        res.paired("nope", "frozen")


def test_report_files(tmp_path):
    methods = {"a": Method(_learner(steps=1, inner_lr=0.5), 1), "b": Method(_learner(steps=0), 0)}
    res = evaluate_fewshot(methods, _source, num_classes=3, shots=[1, 2], tasks_per_shot=2,
                           progress=False)  # fmt: skip
    colors = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    paths = write_report(res, tmp_path / "rep", class_names=["x", "y", "z"], colors=colors,
                         main_method="a")  # fmt: skip
    data = json.loads(paths["metrics"].read_text())
    assert data["main_method"] == "a"
    assert data["summary"]["b"]["2"]["miou"]["n"] == 2
    assert data["paired_miou"]["b"]["1"]["mean"] == pytest.approx(res.paired("a", "b")[1]["mean"])
    assert data["per_task"]["a"]["1"]["kappa"] == res.scores["a"][1]["kappa"]
    text = paths["report"].read_text()
    assert "| a |" in text and "a − b" in text and "miou_vs_shots.png" in text
    for key in ("curve", "maps"):
        with Image.open(paths[key]) as im:
            assert im.size[0] > 100 and im.size[1] > 100
    assert not list((tmp_path / "rep").glob(".*"))  # no temporary files left behind
    with pytest.raises(KeyError, match="unknown main method"):
        write_report(res, tmp_path / "x", class_names=["x", "y", "z"], colors=[(0, 0, 0)] * 3,
                     main_method="c")  # fmt: skip


def test_steps_per_shot_count_are_used_for_their_shot_count():
    learner = _learner(steps=10, inner_lr=0.5)
    methods = {"per_shot": Method(learner, {1: 0, 2: 10}), "zero": Method(learner, 0),
               "ten": Method(learner, 10)}  # fmt: skip
    res = evaluate_fewshot(methods, _source, num_classes=3, shots=[1, 2], tasks_per_shot=2,
                           progress=False)  # fmt: skip
    assert res.scores["per_shot"][1]["miou"] == res.scores["zero"][1]["miou"]
    assert res.scores["per_shot"][2]["miou"] == res.scores["ten"][2]["miou"]
    assert res.scores["ten"][2]["miou"] != res.scores["zero"][2]["miou"]
    with pytest.raises(KeyError):
        Method(learner, {1: 0}).steps_for(5)
