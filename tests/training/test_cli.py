"""`landcover train` through LightningCLI: a fast_dev_run per config, and resume after a kill."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from landcover.geo.fixtures import (
    write_deepglobe_fixture,
    write_folder_fixture,
    write_sen12ms_fixture,
)
from landcover.training.cli import build_cli, main

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"
TINY_MODEL = ["--model.arch", "small_unet", "--model.model_options", "{width: 4, depth: 1}"]
TINY_TASKS = [
    "--data.meta_batch_size", "2", "--data.query", "1", "--data.val_shots", "2",
    "--data.shots", "[1, 2]", "--data.tile_size", "16", "--data.val_regions", "1",
    "--data.test_regions", "1", "--model.learner_options", "{steps: 1, inner_lr: 0.1}",
]  # fmt: skip
TINY_SYNTH = "{regions: 4, tiles_per_region: 6, tile_size: 16, seed: 0}"


def _dataset(name: str, root: Path) -> list[str]:
    if name == "synthetic":
        return ["--data.root", str(root), "--data.options", TINY_SYNTH]
    if name == "sen12ms":
        write_sen12ms_fixture(root, scenes=(1, 2, 3), patches=3, size=32)
        return ["--data.root", str(root)]
    if name == "deepglobe":
        write_deepglobe_fixture(root, images=6, size=64)
        return ["--data.root", str(root), "--data.options", "{patch_size: 32, n_regions: 3}"]
    write_folder_fixture(root, regions=3, tiles=4, size=16)
    return ["--data.root", str(root)]


@pytest.mark.parametrize("config", ["synthetic", "sen12ms", "deepglobe", "folder"])
def test_fast_dev_run_of_each_config(config, tmp_path):
    args = [
        "fit", "--config", str(CONFIGS / f"{config}.yaml"), *_dataset(config, tmp_path / "data"),
        *TINY_MODEL, *TINY_TASKS, "--trainer.fast_dev_run", "true",
        "--trainer.default_root_dir", str(tmp_path / "run"),
        "--trainer.enable_progress_bar", "false", "--trainer.accelerator", "cpu",
    ]  # fmt: skip
    cli = build_cli(args)
    assert cli.trainer.global_step == 1  # one outer step really happened
    assert cli.model.learner.name == "mamlpp"
    assert cli.model.hparams.in_channels == cli.datamodule.num_bands
    assert cli.model.data_meta["band_names"] == cli.datamodule.band_names
    assert "val/miou_after" in cli.trainer.callback_metrics


@pytest.mark.parametrize("config", ["sen12ms", "deepglobe"])
def test_gpu_configs_run_task_batched_on_cpu(config, tmp_path):
    """The GPU configs (256 px smp U-Net, grouped task batch) parse and take a step here."""
    text = (CONFIGS / f"{config}_gpu.yaml").read_text()
    assert "accelerator: gpu" in text and "tile_size: 256" in text and "smp:resnet18" in text
    options = "{steps: 1, inner_lr: 0.1, task_batch: grouped}"
    tiny = [*TINY_TASKS[:-2], "--model.learner_options", options]
    args = [
        "fit", "--config", str(CONFIGS / f"{config}_gpu.yaml"),
        *_dataset(config, tmp_path / "data"), *TINY_MODEL, *tiny,
        "--trainer.fast_dev_run", "true", "--trainer.default_root_dir", str(tmp_path / "run"),
        "--trainer.enable_progress_bar", "false", "--trainer.accelerator", "cpu",
    ]  # fmt: skip
    cli = build_cli(args)
    assert cli.trainer.global_step == 1
    assert cli.model.learner.task_batch == "grouped"


def test_multispectral_config_takes_a_step_on_the_scene_case_with_its_own_model(tmp_path):
    """configs/multispectral.yaml as shipped (frozen encoder, spectral path, class 1..7)."""
    from landcover.geo.scene import SceneConfig, write_scene_dataset

    paths = write_scene_dataset(tmp_path / "case", SceneConfig(size=128, tile_size=32))
    tiny = [*TINY_TASKS[:-2], "--model.learner_options", "{steps: 1, inner_lr: 0.1}"]
    tiny[tiny.index("--data.tile_size") + 1] = "32"
    args = [
        "fit", "--config", str(CONFIGS / "multispectral.yaml"), "--data.root",
        str(paths["regions"]), *tiny, "--data.val_tasks", "1", "--trainer.fast_dev_run", "true",
        "--trainer.default_root_dir", str(tmp_path / "run"),
        "--trainer.enable_progress_bar", "false", "--trainer.accelerator", "cpu",
    ]  # fmt: skip
    cli = build_cli(args)
    assert cli.trainer.global_step == 1
    assert cli.model.data_meta["band_names"] == ["blue", "green", "red", "nir", "swir1"]
    assert cli.model.learner.model.options["spectral_channels"] == 16
    assert cli.model.learner.model.head.stride == 1


def test_bad_config_value_is_an_error(tmp_path, capsys):
    rc = main(["--config", str(CONFIGS / "synthetic.yaml"), "--data.dataset", "nope",
               "--trainer.default_root_dir", str(tmp_path)])  # fmt: skip
    assert rc != 0


KILLER = textwrap.dedent(
    """
    import os, signal
    from lightning.pytorch.callbacks import Callback

    class KillAtStep(Callback):
        def __init__(self, step: int):
            self.step = step

        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == self.step:
                os.kill(os.getpid(), signal.SIGKILL)
    """
)


def _train_args(root: Path, data: Path, epochs: int) -> list[str]:
    return [
        "train", "fit", "--config", str(CONFIGS / "synthetic.yaml"),
        *_dataset("synthetic", data), *TINY_MODEL, *TINY_TASKS,
        "--data.batches_per_epoch", "2", "--data.val_tasks", "1",
        "--trainer.max_epochs", str(epochs), "--trainer.default_root_dir", str(root),
        "--trainer.enable_progress_bar", "false", "--trainer.accelerator", "cpu",
        "--model.train_metrics_every", "1",
    ]  # fmt: skip


def _run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "landcover.cli", *args]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


@pytest.mark.slow
def test_resume_after_kill_continues_the_same_run(tmp_path):
    (tmp_path / "killer.py").write_text(KILLER)
    data = tmp_path / "data"
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    kill = ["--trainer.callbacks+=killer.KillAtStep", "--trainer.callbacks.step", "5"]
    # 3 epochs of 2 steps; SIGKILL in the middle of the third epoch (after step 5).
    proc = _run(_train_args(killed, data, 3) + kill, tmp_path)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    last = killed / "checkpoints" / "last.ckpt"
    ckpt = _load(last)
    assert ckpt["global_step"] == 4 and ckpt["epoch"] == 1  # end of the second epoch

    proc = _run([*_train_args(killed, data, 3), "--ckpt_path", "last"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = _run(_train_args(whole, data, 3), tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]

    resumed, ref = _load(last), _load(whole / "checkpoints" / "last.ckpt")
    assert resumed["global_step"] == ref["global_step"] == 6
    assert resumed["epoch"] == ref["epoch"] == 2
    # the optimizer state (Adam moments and step counters) continued, not restarted
    r_opt, w_opt = resumed["optimizer_states"][0]["state"], ref["optimizer_states"][0]["state"]
    assert [float(s["step"]) for s in r_opt.values()] == [6.0] * len(r_opt)
    assert resumed["lr_schedulers"][0]["last_epoch"] == ref["lr_schedulers"][0]["last_epoch"]
    for k in w_opt:
        torch.testing.assert_close(r_opt[k]["exp_avg"], w_opt[k]["exp_avg"], rtol=1e-5, atol=1e-7)
    # and the final weights equal those of the uninterrupted run
    assert resumed["state_dict"].keys() == ref["state_dict"].keys()
    for k, v in ref["state_dict"].items():
        torch.testing.assert_close(resumed["state_dict"][k], v, rtol=1e-5, atol=1e-7, msg=k)


def test_missing_folder_is_a_clear_error(tmp_path, capsys):
    rc = main(["--config", str(CONFIGS / "folder.yaml"), "--data.root", str(tmp_path / "none"),
               "--trainer.default_root_dir", str(tmp_path)])  # fmt: skip
    assert rc == 2
    assert str(tmp_path / "none") in capsys.readouterr().err


def test_sen12ms_config_holds_out_the_russwurm_scenes_by_default(tmp_path):
    import yaml

    from landcover.geo.sen12ms import DEFAULT_TEST_SCENES
    from landcover.training.datamodule import RegionTaskDataModule

    config = yaml.safe_load((CONFIGS / "sen12ms.yaml").read_text())["data"]
    assert config["val_regions"] == config["test_regions"] == "dataset"
    root = write_sen12ms_fixture(tmp_path / "sen12ms", scenes=(1, 2, 3, 8), patches=2, size=32)
    dm = RegionTaskDataModule(
        dataset="sen12ms", root=str(root), val_regions="dataset", test_regions="dataset"
    )
    test_names = sorted(r.name for r in dm.test_regions)
    assert 8 in DEFAULT_TEST_SCENES and 1 not in DEFAULT_TEST_SCENES
    assert test_names == ["ROIs1158_spring_8", "ROIs1970_fall_8"]
    held = {r.name for r in dm.val_regions} | set(test_names)
    assert all(r.name not in held for r in dm.train_regions)
    with pytest.raises(ValueError, match="no split of its own"):
        RegionTaskDataModule(
            dataset="folder",
            root=str(write_folder_fixture(tmp_path / "f", regions=3, tiles=2, size=16)),
            val_regions="dataset",
        )
