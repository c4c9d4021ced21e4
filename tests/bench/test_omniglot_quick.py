import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from landcover.bench import omniglot


def _runs(root: Path, n_runs: int, n_classes: int) -> Path:
    """Lake et al.'s layout: runNN/{training/classJJ.png, test/itemKK.png, class_labels.txt}."""
    rng = np.random.default_rng(0)
    for r in range(1, n_runs + 1):
        run = root / f"run{r:02d}"
        (run / "training").mkdir(parents=True)
        (run / "test").mkdir()
        lines = []
        for j in range(1, n_classes + 1):
            Image.fromarray(rng.random((105, 105)) > 0.1).save(
                run / "training" / f"class{j:02d}.png"
            )
            Image.fromarray(rng.random((105, 105)) > 0.1).save(run / "test" / f"item{j:02d}.png")
            lines.append(f"run{r:02d}/test/item{j:02d}.png run{r:02d}/training/class{j:02d}.png")
        (run / "class_labels.txt").write_text("\n".join(lines))
    return root


@pytest.mark.slow
def test_quick_bench_every_row_json_plot_models_and_eval_only(shared_data, tmp_path):
    parser = argparse.ArgumentParser()
    omniglot.add_arguments(parser)
    runs = _runs(tmp_path / "all_runs", n_runs=2, n_classes=20)
    out = tmp_path / "out"
    args = parser.parse_args(
        [
            "--quick",
            "--out",
            str(out),
            "--runs",
            str(runs),
            "--threads",
            "1",
            "--data",
            str(shared_data / "omniglot/images_background_small1.zip"),
            str(shared_data / "omniglot/images_background_small2.zip"),
        ]
    )
    assert omniglot.run(args) == 0
    report = json.loads((out / "omniglot.json").read_text())
    assert [r["name"] for r in report["rows"]] == [r.name for r in omniglot.ROWS]
    assert report["split"]["test_alphabets"] == ["Early_Aramaic", "Tagalog"]
    for row in report["rows"]:
        assert set(row["accuracy"]) == {"5w1s", "5w5s", "20w1s", "20w5s"}
        for acc in row["accuracy"].values():
            assert 0.0 <= acc["accuracy"] <= 1.0 and acc["ci95"] >= 0
        assert 0.0 <= row["lake_runs"]["error_rate"] <= 1.0
        assert (out / "models" / f"{row['name']}.safetensors").exists()
    proto = next(r for r in report["rows"] if r["name"] == "protonet")["accuracy"]
    # chance is 20% / 5%: prototypes on a (barely trained) Conv-4 must beat it clearly
    assert proto["5w1s"]["accuracy"] > 0.35 and proto["20w1s"]["accuracy"] > 0.12
    assert (out / "omniglot.png").stat().st_size > 10_000
    # --eval-only reloads the saved models and reproduces the same numbers
    args2 = parser.parse_args(
        [
            "--quick",
            "--out",
            str(out),
            "--eval-only",
            "--rows",
            "protonet,maml",
            "--threads",
            "1",
            "--json",
            str(tmp_path / "again.json"),
        ]
    )
    assert omniglot.run(args2) == 0
    again = {r["name"]: r for r in json.loads((tmp_path / "again.json").read_text())["rows"]}
    for name in ("protonet", "maml"):
        first = next(r for r in report["rows"] if r["name"] == name)
        for s in ("5w1s", "20w5s"):
            assert again[name]["accuracy"][s]["accuracy"] == pytest.approx(
                first["accuracy"][s]["accuracy"], abs=1e-6
            )


def test_unknown_row_and_missing_model_are_clear_errors(tmp_path):
    parser = argparse.ArgumentParser()
    omniglot.add_arguments(parser)
    with pytest.raises(KeyError, match="valid"):
        omniglot.run(parser.parse_args(["--rows", "nope", "--out", str(tmp_path)]))
    learner, _ = omniglot.build_row(omniglot.ROWS[0])
    with pytest.raises(FileNotFoundError, match="without --eval-only"):
        omniglot.load_model(learner, omniglot.ROWS[0], tmp_path)


def test_missing_runs_or_data_path_and_absent_cuda_are_clear_errors(tmp_path, capsys):
    from landcover.cli import main

    missing = tmp_path / "all_runs.zip"
    code = main(["bench", "omniglot", "--quick", "--runs", str(missing), "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 2 and f"--runs {missing} does not exist" in out and "Traceback" not in out
    code = main(["bench", "omniglot", "--quick", "--data", str(tmp_path / "x.zip")])
    assert code == 2 and "does not exist" in capsys.readouterr().out
    if not torch.cuda.is_available():
        assert main(["bench", "omniglot", "--quick", "--device", "cuda"]) == 2
        assert "no CUDA device" in capsys.readouterr().out


def test_unknown_rows_and_empty_budgets_are_clear_errors(capsys):
    from landcover.cli import main

    assert main(["bench", "omniglot", "--quick", "--rows", "bogus"]) == 2
    err = capsys.readouterr().err
    assert "unknown row(s) ['bogus']; valid: ['protonet'" in err and "Traceback" not in err
    for bad in (["--episodes", "0"], ["--train-seconds", "-1"]):
        assert main(["bench", "omniglot", "--quick", "--rows", "protonet", *bad]) == 2
        assert "--train-seconds must be > 0 and --episodes >= 1" in capsys.readouterr().err


def test_paper_budget_uses_each_rows_paper_iterations():
    parser = argparse.ArgumentParser()
    omniglot.add_arguments(parser)
    args = parser.parse_args(["--budget", "paper", "--device", "cpu"])
    budget = omniglot.resolve_budget(args)
    assert budget.train_wall_seconds == 1800 and budget.train_seconds == float("inf")
    assert omniglot.PAPER_ITERATIONS["mamlpp"] == 150 * 500
    assert omniglot.PAPER_ITERATIONS["maml"] == 60_000


def _fake_report(names, episodes):
    acc = {
        s: {"accuracy": 0.5, "ci95": 0.01, "episodes": episodes}
        for s in ("5w1s", "5w5s", "20w1s", "20w5s")
    }
    return {
        "mode": "full",
        "split": {"test_alphabets": ["Early_Aramaic", "Tagalog"], "test_classes": 39},
        "budget": {"eval_episodes": episodes},
        "settings": ["5w1s", "5w5s", "20w1s", "20w5s"],
        "threads": 1,
        "total_seconds": 10.0,
        "total_cpu_seconds": 5.0,
        "rows": [
            {"name": n, "label": n, "family": "x", "accuracy": acc, "train": {}} for n in names
        ],
    }


def test_merge_orders_rows_and_refuses_duplicates(tmp_path):
    a = tmp_path / "a.json"
    b = tmp_path / "b.json"
    a.write_text(json.dumps(_fake_report(["maml", "protonet"], 100)))
    b.write_text(json.dumps(_fake_report(["ridge"], 600)))
    parser = argparse.ArgumentParser()
    omniglot.add_arguments(parser)
    out = tmp_path / "out"
    assert omniglot.run(parser.parse_args(["--merge", str(a), str(b), "--out", str(out)])) == 0
    merged = json.loads((out / "omniglot.json").read_text())
    assert [r["name"] for r in merged["rows"]] == ["protonet", "ridge", "maml"]
    assert merged["total_cpu_seconds"] == 10.0 and len(merged["parts"]) == 2
    assert (out / "omniglot.png").exists()
    assert omniglot.run(parser.parse_args(["--merge", str(a), str(a), "--out", str(out)])) == 2
