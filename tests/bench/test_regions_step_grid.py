"""MAML++'s test-time steps in ``bench regions`` (and the demo): 0 steps is a candidate, so a
validation area on which the inner loop hurts keeps the meta-model, as ``landcover adapt``'s
guard does on a user's own support; the candidates follow the config's inner steps."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from landcover.bench.regions import config_settings
from landcover.inference.testing import brightest_band_tiles, fit_brightest_band, tiny_bundle
from landcover.tasks.task import Task
from landcover.training.baselines import choose_steps_per_shot


class _Validation:
    """The part of a region data module that the step choice reads: validation tasks."""

    num_classes, ignore_index = 3, 255

    def eval_task(self, split: str, i: int, *, shots: int) -> Task:
        assert split == "val"
        sx, sy = brightest_band_tiles(shots, seed=100 + 10 * i + shots)
        qx, qy = brightest_band_tiles(2, seed=500 + i)
        return Task(sx, sy, qx, qy)


def _learner(inner_lr: float, pretrained: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    learner = tiny_bundle(3, 3, learner_options={"steps": 2, "inner_lr": inner_lr}).build_learner()
    if pretrained:  # meta-weights that already segment the tiles well
        fit_brightest_band(learner.model)
    return learner


def test_the_grid_has_zero_steps_and_follows_the_configs_inner_steps(tmp_path: Path) -> None:
    assert config_settings(Path("configs/folder.yaml")).maml_steps[0] == 0
    cfg = yaml.safe_load(Path("configs/folder.yaml").read_text(encoding="utf-8"))
    cfg["model"]["learner_options"]["steps"] = 5
    path = tmp_path / "five.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    assert config_settings(path).maml_steps == [0, 1, 5, 10, 20]


@pytest.mark.parametrize(
    ("inner_lr", "pretrained", "zero_wins"),
    [(40.0, True, True),  # good meta-weights, steps that blow up: keep the meta-model
     (0.5, False, False)],  # untrained weights, steps that learn: adapt
)  # fmt: skip
def test_zero_steps_are_chosen_exactly_where_the_inner_loop_hurts(
    inner_lr: float, pretrained: bool, zero_wins: bool
) -> None:
    learner = _learner(inner_lr, pretrained)
    chosen, grid = choose_steps_per_shot(learner, _Validation(), [0, 1, 3], shots=[1, 3], tasks=2)
    for k in (1, 3):
        scores = {n: grid[f"{k}-shot steps={n}"] for n in (0, 1, 3)}
        assert chosen[k] == max(scores, key=scores.get)
        assert (chosen[k] == 0) is zero_wins
        if zero_wins:
            assert scores[0] > max(scores[1], scores[3]) + 0.2
        else:
            assert max(scores[1], scores[3]) > scores[0] + 0.05
