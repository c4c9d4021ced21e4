"""`landcover demo --quick` on the real dubai-aerial sample: report, maps, every baseline."""

from __future__ import annotations

import json

import pytest

from landcover.evaluation.demo import main
from landcover.evaluation.demo_real import sample_root


@pytest.mark.slow
def test_quick_real_demo_scores_every_baseline_and_exports_a_bundle(tmp_path, capsys):
    assert sample_root().is_dir(), "the dubai-aerial sample must ship in the repository"
    out = tmp_path / "demo"
    assert main(["--quick", "--out", str(out), "--no-progress", "--threads", "1"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["test"] == "Tile 4" and "Tile 4" not in summary["train"]
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    methods = set(metrics["summary"])
    assert {"MAML++", "unadapted", "pretrain+finetune", "scratch", "protonet", "rf"} <= methods
    assert (out / "report" / "maps.png").stat().st_size > 10_000
    assert (out / "maml.bundle").exists()
    printed = capsys.readouterr().out
    assert "MAML++ − rf at 1 shots" in printed


def test_real_demo_refuses_a_missing_data_folder(tmp_path, capsys):
    assert main(["--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "d")]) == 2
    assert "not there" in capsys.readouterr().err
