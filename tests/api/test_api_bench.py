"""``landcover bench api --quick`` runs end to end against a real server and writes JSON."""

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
    assert "landcover bench api" in capsys.readouterr().out
