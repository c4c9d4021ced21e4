"""``landcover evaluate --baselines``: baseline rows without dummy bundles."""

import json

from landcover.evaluation.evaluate_cli import main
from landcover.geo.datasets import load_regions
from landcover.geo.fixtures import write_folder_fixture
from tests.evaluation.test_evaluate_cli import _bundle


def test_baseline_rows_next_to_a_bundle(tmp_path, capsys):
    held = write_folder_fixture(tmp_path / "held", regions=2, tiles=4, size=16, seed=1)
    train = write_folder_fixture(tmp_path / "train", regions=2, tiles=4, size=16, seed=2)
    a = _bundle(tmp_path / "maml.bundle", load_regions(train))
    out = tmp_path / "report"
    rc = main([str(a), "--regions", str(held), "--shots", "1", "--tasks", "2", "--query", "1",
               "--out", str(out), "--baselines", "unadapted,scratch,pretrain",
               "--pretrain-regions", str(train), "--val-regions", str(train),
               "--pretrain-steps", "3", "--tuning-tasks", "1"])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    data = json.loads((out / "metrics.json").read_text())
    assert set(data["summary"]) == {"maml", "unadapted", "scratch", "pretrain+finetune"}
    assert set(data["paired_miou"]) == {"unadapted", "scratch", "pretrain+finetune"}
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
