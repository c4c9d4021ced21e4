import argparse
import json
import subprocess
import sys
from functools import partial

import pytest

from landcover.bench import omniglot
from landcover.bench.omniglot import jobs as omniglot_jobs
from landcover.bench.omniglot.jobs import estimate_cost, partition_rows

ROWS = {r.name: r for r in omniglot.ROWS}
FULL = omniglot.BUDGETS["full"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    omniglot.add_arguments(parser)
    return parser


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_partition_every_row_once_baselines_together_groups_in_table_order(n):
    rows = list(omniglot.ROWS)
    groups = partition_rows(rows, n, partial(estimate_cost, budget=FULL))
    assert len(groups) == n and all(groups)
    flat = [r.name for g in groups for r in g]
    assert sorted(flat) == sorted(r.name for r in rows)
    assert len(set(flat)) == len(flat)
    table = [r.name for r in rows]
    for g in groups:
        names = [r.name for r in g]
        assert names == sorted(names, key=table.index)
    (with_head,) = [g for g in groups if ROWS["pretrain_head"] in g]
    assert ROWS["pretrain_nn"] in with_head


def test_partition_spreads_the_heaviest_rows_and_balances():
    rows = list(omniglot.ROWS)
    cost = partial(estimate_cost, budget=FULL)
    groups = partition_rows(rows, 2, cost)
    heavy = sorted(rows, key=lambda r: -cost([r]))[:2]
    assert not any(heavy[0] in g and heavy[1] in g for g in groups)
    # the LPT bound: no group exceeds the mean load by more than the costliest row
    loads = [cost(g) for g in groups]
    assert max(loads) <= sum(loads) / 2 + cost([heavy[0]]) and min(loads) > 0


def test_partition_clamps_n_and_counts_shared_pretraining_once():
    rows = [ROWS["protonet"], ROWS["pretrain_head"], ROWS["pretrain_nn"]]
    groups = partition_rows(rows, 8, partial(estimate_cost, budget=FULL))
    assert [[r.name for r in g] for g in groups] == [
        ["protonet"],
        ["pretrain_head", "pretrain_nn"],
    ]
    assert partition_rows(rows, 0, lambda g: 1.0) == [rows]
    both = estimate_cost(rows[1:], FULL)
    assert both == pytest.approx(
        estimate_cost(rows[1:2], FULL) + estimate_cost(rows[2:], FULL) - FULL.train_seconds
    )
    # a row unknown to the cost table gets its family's default
    new = omniglot.Row("new_opt", "New", "optimization", "maml")
    assert estimate_cost([new], FULL, eval_only=True) == pytest.approx(0.065 * 600 * 4)


def test_child_command_forwards_the_options(tmp_path):
    args = _parser().parse_args(
        "--quick --eval-only --seed 3 --episodes 7 --train-seconds 5 --runs r.zip "
        "--device cuda --budget paper "
        f"--data a.zip b.zip --out {tmp_path} --jobs 2".split()
    )
    cmd = omniglot_jobs.child_command(args, ["protonet", "cnp"], tmp_path / "p.json")
    assert cmd[:5] == [sys.executable, "-m", "landcover.cli", "bench", "omniglot"]
    text = " ".join(cmd)
    for part in ("--rows protonet,cnp", "--threads 1", "--seed 3", "--episodes 7", "--quick",
                 "--device cuda", "--budget paper"):  # fmt: skip
        assert part in text
    assert "--train-seconds 5.0" in text and "--runs r.zip" in text and "--eval-only" in text
    assert cmd[-3:] == ["--data", "a.zip", "b.zip"] and "--jobs" not in text


def test_jobs_with_merge_is_an_error(tmp_path, capsys):
    args = _parser().parse_args(["--jobs", "2", "--merge", "x.json", "--out", str(tmp_path)])
    assert omniglot.run(args) == 2
    assert "--merge" in capsys.readouterr().out


def test_failed_and_missing_part_are_reported_and_the_rest_merged(tmp_path, monkeypatch, capsys):
    report = {
        "mode": "quick",
        "split": {"test_alphabets": ["Early_Aramaic", "Tagalog"], "test_classes": 39},
        "budget": {},
        "settings": ["5w1s"],
        "threads": 1,
        "total_seconds": 1.0,
        "total_cpu_seconds": 1.0,
        "rows": [],
    }

    def fake(args, names, json_path):  # part0 writes its rows, part1 dies without results
        rows = [{"name": n, "label": n, "family": "x", "accuracy": {}} for n in names]
        text = json.dumps({**report, "rows": rows})
        code = f"import pathlib; pathlib.Path({str(json_path)!r}).write_text({text!r})"
        return [
            sys.executable,
            "-c",
            "raise SystemExit(3)" if json_path.name == "part1.json" else code,
        ]

    monkeypatch.setattr(omniglot_jobs, "child_command", fake)
    args = _parser().parse_args(["--rows", "protonet,maml", "--jobs", "2", "--out", str(tmp_path)])
    assert omniglot.run(args) == 1
    out = capsys.readouterr().out
    assert "part1 (maml) failed with exit status 3" in out
    assert "part1.json missing" in out
    merged = json.loads((tmp_path / "omniglot.json").read_text())
    assert [r["name"] for r in merged["rows"]] == ["protonet"] and merged["jobs"] == 2


@pytest.mark.slow
def test_quick_bench_in_two_processes(shared_data, tmp_path):
    out = tmp_path / "out"
    names = ["protonet", "cnp", "pretrain_head", "pretrain_nn"]
    cmd = [sys.executable, "-m", "landcover.cli", "bench", "omniglot", "--quick", "--jobs", "2"]
    cmd += ["--rows", ",".join(names), "--out", str(out), "--data"]
    cmd += [str(shared_data / f"omniglot/{f}") for f in omniglot.DATA_FILES]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for i in range(2):
        assert (out / "parts" / f"part{i}.json").exists()
        assert (out / "parts" / f"part{i}.log").exists()
    report = json.loads((out / "omniglot.json").read_text())
    assert [r["name"] for r in report["rows"]] == names
    assert report["jobs"] == 2 and len(report["parts"]) == 2
    for row in report["rows"]:
        assert set(row["accuracy"]) == {"5w1s", "5w5s", "20w1s", "20w5s"}
        assert all(0.0 <= a["accuracy"] <= 1.0 for a in row["accuracy"].values())
        assert (out / "models" / f"{row['name']}.safetensors").exists()
    assert (out / "omniglot.png").stat().st_size > 10_000
