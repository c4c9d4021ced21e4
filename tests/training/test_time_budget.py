"""Time-capped training is still a schedule; ``train`` states its split and misfits (issue 23).

``--trainer.max_time`` alone is the budget (the config's ``max_epochs`` no longer ends the
run first), and the outer rate anneals to ``min_lr`` over that time; before, the rate was
still 0.00299 of 0.003 at step 609 of a 10-minute run. ``landcover train`` prints the
region split and warns about a tile size or a stride that does not fit the data.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.callbacks import Timer

from landcover.geo.fixtures import write_folder_fixture
from landcover.training.cli import main, time_budget_alone
from landcover.training.schedule import budget_cosine, budget_progress

REPO = Path(__file__).resolve().parents[2]
SMALL = [
    "--model.arch", "small_unet", "--model.model_options", "{width: 4, depth: 1}",
    "--data.meta_batch_size", "2", "--data.query", "1", "--data.val_shots", "2",
    "--data.shots", "[1, 2]", "--data.val_regions", "1", "--data.test_regions", "1",
    "--model.learner_options", "{steps: 1, inner_lr: 0.1}", "--data.val_tasks", "1",
    "--trainer.enable_progress_bar", "false", "--trainer.accelerator", "cpu",
]  # fmt: skip


def _trainer(total: float, duration: float | None = None, elapsed: float = 0.0):
    callbacks = []
    if duration is not None:
        timer = Timer(duration={"seconds": duration})
        timer._start_time["train"] = time.monotonic() - elapsed
        callbacks.append(timer)
    return SimpleNamespace(callbacks=callbacks, estimated_stepping_batches=total)


def test_progress_is_the_larger_of_steps_and_time() -> None:
    assert budget_progress(_trainer(100), 25, 100) == 0.25
    assert budget_progress(_trainer(math.inf), 10**6, math.inf) == 0.0  # nothing bounds it
    half = budget_progress(_trainer(math.inf, 100, elapsed=50), 7, math.inf)
    assert half == pytest.approx(0.5, abs=0.01)
    assert budget_progress(_trainer(100, 100, elapsed=10), 80, 100) == 0.8  # steps first
    assert budget_progress(_trainer(100, 100, elapsed=150), 1, 100) == 1.0


def test_step_budget_gives_the_cosine_of_cosine_annealing_lr() -> None:
    """Without a time budget the factor is torch's CosineAnnealingLR, step for step."""
    floor = 1e-5 / 3e-3
    factor = budget_cosine(_trainer(40), floor)
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=3e-3)
    ref = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=40, eta_min=1e-5)
    for step in range(41):
        assert 3e-3 * factor(step) == pytest.approx(ref.get_last_lr()[0], rel=1e-6, abs=1e-12)
        opt.step()
        ref.step()


def test_time_alone_lifts_the_config_epochs() -> None:
    base = ["fit", "--config", "c.yaml"]
    assert time_budget_alone([*base, "--trainer.max_time", "00:00:10:00"])[-1] == (
        "--trainer.max_epochs=-1"
    )
    both = [*base, "--trainer.max_time=00:00:10:00", "--trainer.max_epochs", "3"]
    assert time_budget_alone(both) == both
    assert time_budget_alone(base) == base


@pytest.mark.slow
def test_time_capped_run_anneals_to_min_lr(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """6 s alone are the budget (the synthetic config's max_epochs 16 is lifted), and the
    last checkpoint's outer rate is at the bottom of its cosine, however many steps the
    machine managed in that time."""
    write_folder_fixture(tmp_path / "data", regions=3, tiles=4, size=16)
    root = tmp_path / "run"
    start = time.monotonic()
    code = main(["fit", "--config", str(REPO / "configs" / "synthetic.yaml"),
                 "--data.dataset", "folder", "--data.root", str(tmp_path / "data"),
                 "--data.options", "null", "--data.tile_size", "16", *SMALL,
                 "--data.batches_per_epoch", "2", "--trainer.max_time", "00:00:00:06",
                 "--trainer.default_root_dir", str(root)])  # fmt: skip
    seconds = time.monotonic() - start
    err = capsys.readouterr().err
    assert code == 0, err
    assert "--trainer.max_time given alone" in err
    assert seconds >= 6, "the time budget, not the config's epochs, ended the run"
    ckpt = torch.load(root / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    lr = ckpt["optimizer_states"][0]["param_groups"][0]["lr"]
    steps = ckpt["global_step"]
    assert steps >= 1
    assert lr < 1e-5 + 0.15 * (3e-3 - 1e-5), f"outer rate {lr} after {steps} steps"


def test_train_prints_the_split_and_warns_about_misfits(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """16-px tiles cropped at 32 px, stride 2 at 10 m pixels: both named with the fix."""
    write_folder_fixture(tmp_path / "data", regions=3, tiles=3, size=16)
    code = main(["fit", "--config", str(REPO / "configs" / "folder.yaml"),
                 "--data.root", str(tmp_path / "data"), *SMALL, "--data.tile_size", "32",
                 "--model.model_options", "{width: 4, depth: 1, stride: 2}",
                 "--trainer.fast_dev_run", "true",
                 "--trainer.default_root_dir", str(tmp_path / "run")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err
    assert "landcover train: region split" in err
    assert "train: 1 region(s), 3 tiles: region_" in err and "test: 1 region(s)" in err
    assert "tiles are 16 px but data.tile_size is 32: each crop is 75% padding" in err
    assert "set --data.tile_size 16" in err
    assert "model_options.stride 2 runs the network on 2x2-pixel blocks, 20 m" in err
    assert "set --model.model_options.stride 1" in err
