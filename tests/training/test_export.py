"""A training run exported as a model bundle predicts exactly like the trained learner."""

import pytest
import torch

from landcover.inference.bundle import ModelBundle, find_model
from landcover.inference.export_cli import find_checkpoint, main
from landcover.training.baselines import fit_learner
from landcover.training.datamodule import RegionTaskDataModule

SYNTH = {"regions": 4, "tiles_per_region": 6, "tile_size": 16, "seed": 0}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    dm = RegionTaskDataModule(root=str(root / "data"), options=SYNTH, val_regions=1,
                              test_regions=1, shots=[1, 2], query=1, tile_size=16,
                              meta_batch_size=2, batches_per_epoch=2, val_tasks=1,
                              val_shots=2)  # fmt: skip
    opts = {"steps": 1, "inner_lr": 0.1}
    module = fit_learner("mamlpp", opts, dm, root / "run", max_epochs=1, eval_steps=2,
                         model_options={"width": 4, "depth": 1}, progress=False)  # fmt: skip
    return dm, module, root


def test_bundle_round_trip_from_a_run(trained, tmp_path):
    dm, module, root = trained
    out = tmp_path / "model.bundle"
    assert main([str(root / "run"), "-o", str(out), "--checkpoint", "last"]) == 0
    bundle = ModelBundle.load(out)
    # the learner's trained step count (1), not the run's eval_steps (2), unless asked (issue 11)
    assert bundle.learner["name"] == "mamlpp" and bundle.inner_steps == 1
    for flags, steps in ((["--eval-steps"], 2), (["--steps", "4"], 4)):
        assert main([str(root / "run"), "-o", str(tmp_path / "b.bundle"), *flags]) == 0
        assert ModelBundle.load(tmp_path / "b.bundle").inner_steps == steps
    assert bundle.bands == dm.band_names and bundle.class_names == list(dm.scheme.names)
    assert bundle.mean == pytest.approx(list(dm.stats.mean))
    assert (
        bundle.tile_size == 16 and bundle.info["regions"]["test"] == dm.data_meta["regions"]["test"]
    )
    learner = bundle.build_learner()
    module.learner.eval()
    task = dm.eval_task("test", 0, shots=2)
    with torch.enable_grad():
        s_ref = module.learner.adapt(task.support_x, task.support_y, steps=2).detached()
        s_new = learner.adapt(task.support_x, task.support_y, steps=2).detached()
    with torch.no_grad():
        ref, new = module.learner.predict(s_ref, task.query_x), learner.predict(s_new, task.query_x)
    torch.testing.assert_close(new, ref, rtol=0, atol=1e-6)


def test_find_checkpoint_and_errors(trained, tmp_path, capsys):
    _, _, root = trained
    assert find_checkpoint(root / "run", "last").name == "last.ckpt"
    assert find_checkpoint(root / "run", "best").name.startswith("best-")
    assert main([str(tmp_path / "nothing"), "-o", str(tmp_path / "x.bundle")]) == 2
    assert "no such run folder" in capsys.readouterr().err
    assert not (tmp_path / "x.bundle").exists()


def test_cavia_trains_with_its_context_channels_and_exports(tmp_path):
    """CAVIA's network takes the bands plus ``context_dim`` channels (before: a shape error)."""
    dm = RegionTaskDataModule(root=str(tmp_path / "data"), options=SYNTH, val_regions=1,
                              test_regions=1, shots=[1], query=1, tile_size=16,
                              meta_batch_size=1, batches_per_epoch=1, val_tasks=1,
                              val_shots=1)  # fmt: skip
    module = fit_learner("cavia", {"steps": 1, "context_dim": 3}, dm, tmp_path / "run",
                         max_epochs=1, model_options={"width": 4, "depth": 1},
                         progress=False)  # fmt: skip
    assert find_model(module.learner).config["in_channels"] == len(dm.band_names) + 3
    out = tmp_path / "cavia.bundle"
    assert main([str(tmp_path / "run"), "-o", str(out)]) == 0
    bundle = ModelBundle.load(out)
    assert bundle.learner["extra_channels"] == 3 and bundle.bands == dm.band_names
    task = dm.eval_task("test", 0, shots=1)
    learner = bundle.build_learner()
    with torch.enable_grad():
        state = learner.adapt(task.support_x, task.support_y, steps=1).detached()
    with torch.no_grad():
        pred = learner.predict(state, task.query_x)
    assert pred.shape[1] == dm.scheme.num_classes and torch.isfinite(pred).all()


def test_export_says_which_checkpoint_it_took_and_why(trained, tmp_path, capsys):
    """Before, `export` took the best-validation checkpoint (step 80 of 610) silently."""
    _, _, root = trained
    capsys.readouterr()
    assert main([str(root / "run"), "-o", str(tmp_path / "best.bundle")]) == 0
    out = capsys.readouterr().out
    best = find_checkpoint(root / "run", "best").name
    assert f"took {best}: the best validation mIoU after adaptation (" in out
    assert "at step 2 of 2; --checkpoint last takes the weights at the end of training" in out
    info = ModelBundle.load(tmp_path / "best.bundle").info
    assert info["checkpoint"] == best and info["checkpoint_choice"] in out
    assert main([str(root / "run"), "-o", str(tmp_path / "l.bundle"), "--checkpoint", "last"]) == 0
    assert "took last.ckpt (step 2 of 2): the last checkpoint, as asked" in capsys.readouterr().out
