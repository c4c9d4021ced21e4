"""``landcover evaluate --baselines``: baseline rows without dummy bundles."""

import json

import torch
from torch import nn

from landcover.evaluation.evaluate_cli import main
from landcover.geo.datasets import load_regions
from landcover.geo.fixtures import write_folder_fixture
from landcover.geo.normalize import compute_band_stats
from landcover.inference.bundle import ModelBundle
from landcover.meta.registry import build_learner
from landcover.models import build_model


def _bundle(path, regions):
    """A one-step MAML bundle of a tiny U-Net over ``regions``' bands and classes."""
    r0, stats = regions[0], compute_band_stats(regions)
    torch.manual_seed(0)
    model = build_model("small_unet", len(r0.band_names), r0.scheme.num_classes, width=4, depth=1)
    learner = build_learner("maml", model, nn.CrossEntropyLoss(ignore_index=255), steps=1)
    bundle = ModelBundle.from_learner(learner, bands=list(r0.band_names), mean=list(stats.mean),
                                      std=list(stats.std), classes=r0.scheme, tile_size=16,
                                      inner_steps=1)  # fmt: skip
    return bundle.save(path)


def test_baseline_rows_next_to_a_bundle(tmp_path, capsys):
    held = write_folder_fixture(tmp_path / "held", regions=2, tiles=4, size=16, seed=1)
    train = write_folder_fixture(tmp_path / "train", regions=2, tiles=4, size=16, seed=2)
    a = _bundle(tmp_path / "maml.bundle", load_regions(train))
    out = tmp_path / "report"
    rc = main([str(a), "--regions", str(held), "--shots", "1", "--tasks", "2", "--query", "1",
               "--out", str(out), "--baselines", "unadapted,scratch,pretrain,rf",
               "--pretrain-regions", str(train), "--val-regions", str(train),
               "--pretrain-steps", "3", "--tuning-tasks", "1"])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    data = json.loads((out / "metrics.json").read_text())
    assert set(data["summary"]) == {"maml", "unadapted", "scratch", "pretrain+finetune", "rf"}
    assert set(data["paired_miou"]) == {"unadapted", "scratch", "pretrain+finetune", "rf"}
    assert "random forest" in setup_text(data)
    setup = data["meta"]["baselines"]
    assert "(validation)" in setup["scratch"] and setup["pretrain+finetune"].startswith("3 outer")
    assert "Baseline scratch" in (out / "report.md").read_text()


def test_baseline_errors(tmp_path, capsys):
    held = write_folder_fixture(tmp_path / "held", regions=2, tiles=4, size=16)
    a = _bundle(tmp_path / "maml.bundle", load_regions(held))
    assert main([str(a), "--regions", str(held), "--baselines", "oracle"]) == 2
    assert "unknown baselines ['oracle']" in capsys.readouterr().err
    assert main([str(a), "--regions", str(held), "--baselines", "pretrain", "--tasks", "1"]) == 2
    assert "--pretrain-regions" in capsys.readouterr().err


def test_report_says_how_an_untuned_baseline_was_set_and_the_split(tmp_path, capsys):
    """Before: "Baseline scratch: given." and no word on the bundle's training split."""
    from dataclasses import replace

    held = write_folder_fixture(tmp_path / "held", regions=2, tiles=4, size=16, seed=1)
    train = write_folder_fixture(tmp_path / "train", regions=3, tiles=4, size=16, seed=2)
    path = _bundle(tmp_path / "maml.bundle", load_regions(train))
    split = {"train": ["region_0"], "val": ["region_1"], "test": ["region_2"]}
    bundle = ModelBundle.load(path)
    replace(bundle, info={**bundle.info, "regions": split}).save(path)
    out = tmp_path / "report"
    rc = main([str(path), "--regions", str(held), "--shots", "1", "--tasks", "1", "--query",
               "1", "--out", str(out), "--baselines", "scratch", "--finetune-lr", "0.02",
               "--finetune-steps", "7"])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    report = (out / "report.md").read_text()
    assert (
        "Baseline scratch: lr=0.02,steps=7 as given by --finetune-lr/--finetune-steps "
        "(not tuned: --val-regions chooses them on validation regions)."
    ) in report
    assert ("Training split of the first bundle: train region_0; val region_1; "
            "test region_2.") in report  # fmt: skip


def setup_text(data):
    return " ".join(str(v) for v in data["meta"]["baselines"].values())


def test_unadapted_of_a_proto_maml_bundle_also_gives_the_prototype_row(tmp_path, capsys):
    """``--baselines unadapted`` on a Proto-MAML bundle: ``unadapted`` (no support used) and
    ``prototypes (0 steps)`` (the support's prototypes, no gradient step), told apart."""
    held = write_folder_fixture(tmp_path / "held", regions=2, tiles=4, size=16, seed=1)
    r0 = load_regions(held)[0]
    torch.manual_seed(0)
    model = build_model("small_unet", len(r0.band_names), r0.scheme.num_classes, width=4,
                        depth=1, norm="none")  # fmt: skip
    learner = build_learner("mamlpp", model, nn.CrossEntropyLoss(ignore_index=255), steps=1,
                            proto_init=True, bn="none")  # fmt: skip
    n = len(r0.band_names)
    bundle = ModelBundle.from_learner(learner, bands=list(r0.band_names), mean=[0.0] * n,
                                      std=[1.0] * n, classes=r0.scheme, tile_size=16,
                                      inner_steps=1)  # fmt: skip
    path = bundle.save(tmp_path / "proto.bundle")
    out = tmp_path / "report"
    rc = main([str(path), "--regions", str(held), "--shots", "1", "--tasks", "2", "--query",
               "1", "--out", str(out), "--baselines", "unadapted"])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    data = json.loads((out / "metrics.json").read_text())
    assert set(data["summary"]) == {"proto", "unadapted", "prototypes (0 steps)"}
    report = (out / "report.md").read_text()
    assert "Proto-MAML's prototype classifier" in report and "no support used" in report
    scores = data["per_task"]
    assert scores["unadapted"]["1"]["miou"] != scores["prototypes (0 steps)"]["1"]["miou"]
