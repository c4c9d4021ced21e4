"""``landcover bench meta-step`` on a tiny U-Net: every configuration measured, ratios set."""

from __future__ import annotations

import json

import pytest

from landcover.bench.meta_step import CONFIGS
from landcover.cli import main


@pytest.mark.slow
def test_tiny_meta_step_bench_measures_floor_and_learners(tmp_path):
    out = tmp_path / "ms.json"
    args = ["bench", "meta-step", "--size", "16", "--steps", "1", "--shots", "1", "--tasks", "2"]
    keys = ("floor, tasks batched: plain", "MAML 2nd order, grouped")  # one process each
    args += ["--min-seconds", "0", "--json", str(out), "--only", *keys]
    assert main(args) == 0
    payload = json.loads(out.read_text())
    labels = [r["label"] for r in payload["results"]]
    expected = [c["label"] for c in CONFIGS if any(k in c["label"] for k in keys)]
    assert labels == expected
    for r in payload["results"]:
        assert "error" not in r, r
        assert r["seconds_per_task"] > 0 and r["peak_mb"] >= 0
        assert r["ratio_to_floor"] > 0 and r["ratio_to_batched_floor"] > 0
        assert r["floor_seconds_per_task"] > 0 and r["batched_floor_seconds_per_task"] > 0
    rows = {r["label"]: r for r in payload["results"]}
    assert rows["floor, tasks batched: plain fwd+bwd"]["ratio_to_batched_floor"] == 1.0
