import json

import pytest
import torch
from torch import nn

from landcover.evaluation.evaluate_cli import main, parse_shots
from landcover.geo.datasets import load_regions
from landcover.geo.fixtures import write_folder_fixture
from landcover.geo.normalize import compute_band_stats
from landcover.inference.bundle import ModelBundle
from landcover.meta.registry import build_learner
from landcover.models import build_model


def _bundle(path, regions, bands=None):
    r0 = regions[0]
    stats = compute_band_stats(regions)
    n = bands or len(r0.band_names)
    torch.manual_seed(0)
    model = build_model("small_unet", n, r0.scheme.num_classes, width=4, depth=1)
    learner = build_learner("maml", model, nn.CrossEntropyLoss(ignore_index=255), steps=1)
    names = list(r0.band_names) if bands is None else [f"b{i}" for i in range(n)]
    mean = list(stats.mean) if bands is None else [0.0] * n
    std = list(stats.std) if bands is None else [1.0] * n
    bundle = ModelBundle.from_learner(learner, bands=names, mean=mean, std=std,
                                      classes=r0.scheme, tile_size=16, inner_steps=1)  # fmt: skip
    return bundle.save(path)


def test_evaluate_two_bundles_on_folder_regions(tmp_path, capsys):
    root = write_folder_fixture(tmp_path / "regions", regions=2, tiles=4, size=16)
    regions = load_regions(root)
    a, b = _bundle(tmp_path / "a.bundle", regions), _bundle(tmp_path / "b.bundle", regions)
    out = tmp_path / "report"
    rc = main([str(a), str(b), "--regions", str(root), "--shots", "1,2", "--tasks", "2",
               "--query", "1", "--out", str(out)])  # fmt: skip
    assert rc == 0
    data = json.loads((out / "metrics.json").read_text())
    assert set(data["summary"]) == {"a", "b"} and data["main_method"] == "a"
    # same weights, same tasks: the paired difference is exactly zero
    assert data["paired_miou"]["b"]["1"]["mean"] == 0.0
    assert "| a |" in capsys.readouterr().out


def test_bad_inputs_are_clear_errors(tmp_path, capsys):
    root = write_folder_fixture(tmp_path / "regions", regions=2, tiles=4, size=16)
    regions = load_regions(root)
    wrong = _bundle(tmp_path / "wrong.bundle", regions, bands=len(regions[0].band_names) + 1)
    assert main([str(wrong), "--regions", str(root), "--tasks", "1"]) == 2
    assert "band" in capsys.readouterr().err
    with pytest.raises(ValueError, match="comma-separated"):
        parse_shots("1,two")
    assert parse_shots("1,2,5,10") == [1, 2, 5, 10]


@pytest.mark.parametrize("size", ["0", "-16"])
def test_tile_size_that_is_not_positive_is_refused(tmp_path, capsys, size):
    root = write_folder_fixture(tmp_path / "regions", regions=2, tiles=4, size=16)
    bundle = _bundle(tmp_path / "a.bundle", load_regions(root))
    rc = main([str(bundle), "--regions", str(root), "--tasks", "1", "--tile-size", size,
               "--out", str(tmp_path / "report")])  # fmt: skip
    assert rc == 2
    err = capsys.readouterr().err
    assert "--tile-size" in err and "positive" in err and f"got {size}" in err
    assert not (tmp_path / "report").exists()
