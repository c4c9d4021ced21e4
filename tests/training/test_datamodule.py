import pickle

import pytest
import torch

from landcover.training.datamodule import RegionTaskDataModule, split_regions
from landcover.training.tasksets import task_seed

SYNTH = {"regions": 5, "tiles_per_region": 6, "tile_size": 16, "seed": 0}


@pytest.fixture(scope="module")
def dm(tmp_path_factory):
    root = tmp_path_factory.mktemp("dm") / "data"
    return RegionTaskDataModule(root=str(root), options=SYNTH, val_regions=1, test_regions=2,
                                shots=[1, 3], query=2, tile_size=16, meta_batch_size=2,
                                batches_per_epoch=3, val_tasks=2, val_shots=2)  # fmt: skip


def test_split_is_disjoint_and_stats_from_train_only(dm):
    meta = dm.data_meta["regions"]
    names = meta["train"] + meta["val"] + meta["test"]
    assert len(names) == len(set(names)) == 5
    assert (len(meta["val"]), len(meta["test"])) == (1, 2)
    assert dm.num_bands == 4 and dm.num_classes == 6 and dm.ignore_index == 255
    assert dm.data_meta["normalization"]["mean"] == list(dm.stats.mean)


def test_tasks_are_deterministic_and_in_the_shot_range(dm):
    a, b = dm.train_task(7), dm.train_task(7)
    assert torch.equal(a.support_x, b.support_x) and torch.equal(a.query_y, b.query_y)
    shots = {dm.train_task(i).support_x.shape[0] for i in range(30)}
    assert shots == {1, 2, 3}
    t = dm.eval_task("test", 0, shots=3)
    assert t.support_x.shape == (3, 4, 16, 16)
    assert t.meta["region"] in dm.data_meta["regions"]["test"]
    assert task_seed(0, "a", 1) != task_seed(0, "b", 1) != task_seed(0, "a", 2)


def test_loader_yields_meta_batches_and_new_tasks_each_epoch(dm):
    loader = dm.train_dataloader()
    batches = list(loader)
    assert len(batches) == 3 and all(len(b) == 2 for b in batches)
    loader.sampler.set_epoch(1)
    again = next(iter(loader))
    assert not torch.equal(again[0].support_x[:1], batches[0][0].support_x[:1])


def test_pickle_round_trip_keeps_the_split(dm):
    clone = pickle.loads(pickle.dumps(dm))
    assert clone.data_meta == dm.data_meta
    assert torch.equal(clone.train_task(3).support_x, dm.train_task(3).support_x)


def test_bad_splits_are_clear_errors(dm):
    regions = dm.train_regions + dm.val_regions + dm.test_regions
    with pytest.raises(ValueError, match="lower val_regions"):
        split_regions(regions, 2, 3)
    with pytest.raises(KeyError, match="unknown test regions"):
        split_regions(regions, 1, ["nowhere"])
    with pytest.raises(ValueError, match="shots must be"):
        RegionTaskDataModule(root="unused", shots=[3, 1])


@pytest.mark.parametrize(
    ("dataset", "options", "bad"),
    [
        ("folder", {"regions": 8}, "regions"),  # a synthetic knob left in a folder config
        ("synthetic", {"region": 8}, "region"),  # a typo
        ("sen12ms", {"patch": 32}, "patch"),
        ("deepglobe", {"regions": 3}, "regions"),
    ],
)
def test_unknown_reader_options_are_a_clear_error(tmp_path, dataset, options, bad):
    from landcover.training.datamodule import load_regions

    with pytest.raises(ValueError, match=rf"data.options \['{bad}'\].*{dataset}.*valid: \["):
        load_regions(dataset, tmp_path, options)


def test_synthetic_root_made_with_other_knobs_is_refused_not_reused(tmp_path):
    import json

    from landcover.training.datamodule import load_regions

    (tmp_path / "synth.json").write_text(json.dumps({"config": {"regions": 16, "seed": 0}}))
    (tmp_path / "region_000").mkdir()
    with pytest.raises(ValueError, match=r"regions: 16 there, 4 asked.*new folder"):
        load_regions("synthetic", tmp_path, {"regions": 4, "seed": 0})
