"""``landcover bench api --quick`` runs end to end against a real server and writes JSON
(latencies, throughput and a small concurrency sweep with its PNG)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from landcover.bench import api as bench
from landcover.bench.cli import discover

pytestmark = pytest.mark.slow


def test_bench_api_quick(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert discover()["api"] is bench
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(["--quick", "--clients", "2", "--json", str(tmp_path / "r.json")])
    assert bench.run(args) == 0
    results = json.loads((tmp_path / "r.json").read_text())
    assert results["adapt"]["tiles"] == 5 and results["adapt"]["tile_px"] == 128
    assert 0 < results["adapt"]["server_adapt_p50_s"] <= results["adapt"]["p50_s"]
    assert results["predict"]["p50_s"] > 0 and results["predict"]["megapixels_per_s"] > 0
    assert results["throughput"]["requests"] == 2 and results["throughput"]["requests_per_s"] > 0
    sweep = results["sweep"]
    assert [r["clients"] for r in sweep["levels"]] == [1, 4]
    for row in sweep["levels"]:
        assert row["predict"]["ok"] > 0 and row["poll"]["ok"] > 0
        assert row["predict"]["p95_s"] >= row["predict"]["p50_s"] > 0
        assert row["ready_probes"] > 0 and row["ready_max_s"] > 0
    assert sweep["server_errors"] == 0
    assert (tmp_path / "r_sweep.png").stat().st_size > 1000
    out = capsys.readouterr().out
    assert "landcover bench api" in out and "concurrency sweep" in out
