"""``landcover bench regions --quick`` end to end on tiny region folders."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch

from landcover.bench.regions import fold_splits
from landcover.bench.regions.core import grid_starts
from landcover.cli import main as landcover
from landcover.geo.fixtures import write_folder_fixture


def test_fold_splits_leave_one_out_and_k_folds() -> None:
    loo = fold_splits(["a", "b", "c", "d"], None)
    assert [t for t, _ in loo] == [["a"], ["b"], ["c"], ["d"]]
    assert [v for _, v in loo] == [["b"], ["c"], ["d"], ["a"]]
    two = fold_splits(["a", "b", "c", "d", "e"], 2)
    assert [t for t, _ in two] == [["a", "c", "e"], ["b", "d"]]
    assert all(not set(t) & set(v) for t, v in two)
    with pytest.raises(ValueError, match="at least 3"):
        fold_splits(["a", "b"], None)
    with pytest.raises(ValueError, match="no training region"):
        fold_splits(["a", "b", "c"], 2)


def test_grid_tiles_do_not_share_most_of_their_pixels() -> None:
    assert grid_starts(544, 256) == [0, 256]  # a 32-px remainder is left out
    assert grid_starts(509, 256) == [0, 253]  # a 253-px remainder gets an edge tile
    assert grid_starts(1099, 256) == [0, 256, 512, 768]
    assert grid_starts(200, 256) == [0]  # smaller than a tile: one (padded) tile
    for length in range(256, 1200, 7):
        starts = grid_starts(length, 256)
        assert all(b - a >= 128 for a, b in itertools.pairwise(starts))
        assert starts[-1] + 256 <= length


def test_only_folds_checks_its_range(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_folder_fixture(tmp_path / "d", regions=3, tiles=2, size=32, image_format="png")
    argv = ["bench", "regions", str(root), "--quick", "--only-folds", "4", "--no-progress",
            "--out", str(tmp_path / "r")]  # fmt: skip
    assert landcover(argv) == 2
    assert "--only-folds must name folds in 1..3" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_cuda_without_a_gpu_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write_folder_fixture(tmp_path / "d", regions=3, tiles=2, size=32, image_format="png")
    argv = ["bench", "regions", str(root), "--quick", "--device", "cuda", "--no-progress",
            "--out", str(tmp_path / "r")]  # fmt: skip
    assert landcover(argv) == 2
    assert "no CUDA device is visible here; use --device cpu" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_regions_bench_quick_writes_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write_folder_fixture(tmp_path / "d", regions=4, tiles=2, size=32, image_format="png")
    out = tmp_path / "report"
    argv = ["bench", "regions", str(root), "--quick", "--folds", "2", "--seeds", "0",
            "--out", str(out), "--no-progress", "--export"]  # fmt: skip
    assert landcover(argv) == 0
    text = capsys.readouterr().out
    assert "MAML++ minus pretrain+finetune" in text
    metrics = json.loads((out / "metrics.json").read_text())
    methods = {"MAML++", "unadapted", "pretrain+finetune", "scratch", "protonet", "rf"}
    assert set(metrics["summary"]) == methods
    assert set(metrics["paired_miou"]) == methods - {"MAML++"}
    assert set(metrics["paired_miou"]["pretrain+finetune"]) == {"1", "2"}
    assert len(metrics["folds"]) == 2
    assert metrics["folds"][0]["test"] == ["region_0", "region_2"]
    # pooled over the two folds: 2 tasks per shot count each
    assert len(metrics["per_task"]["MAML++"]["1"]["miou"]) == 4
    for name in ("report.md", "miou_vs_shots.png", "maps.png"):
        assert (out / name).stat().st_size > 0
    assert "Per fold" in (out / "report.md").read_text()
    # --export: each fold's MAML++ model as a bundle that adapt and predict load
    from landcover.inference.bundle import ModelBundle

    bundles = sorted((out / "bundles").glob("*.bundle"))
    assert [b.name for b in bundles] == ["seed0_fold1.bundle", "seed0_fold2.bundle"]
    bundle = ModelBundle.load(bundles[0])
    assert bundle.class_names == ["water", "forest", "crops"]


@pytest.mark.slow
def test_jobs_run_folds_in_processes_with_the_same_scores(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--jobs 2`` pools the same per-task scores, in the same order, as one process."""
    root = write_folder_fixture(tmp_path / "d", regions=3, tiles=2, size=32, image_format="png")
    per_task = {}
    for jobs, threads in ((1, 1), (2, 2)):  # one torch thread per run either way
        out = tmp_path / f"jobs{jobs}"
        argv = ["bench", "regions", str(root), "--quick", "--seeds", "0", "--out", str(out),
                "--no-progress", "--jobs", str(jobs), "--threads", str(threads)]  # fmt: skip
        assert landcover(argv) == 0
        metrics = json.loads((out / "metrics.json").read_text())
        assert [(f["seed"], f["fold"]) for f in metrics["folds"]] == [(0, 0), (0, 1), (0, 2)]
        per_task[jobs] = metrics["per_task"]
    assert "3 runs on 2 processes of 1 thread(s)" in capsys.readouterr().err
    assert per_task[2] == per_task[1]
    with pytest.raises(SystemExit):
        landcover(["bench", "regions", str(root), "--jobs", "x"])
