"""``landcover bench sinusoid --quick`` end to end: every row, finite numbers, a PNG."""

from __future__ import annotations

import json
import math

import pytest

from landcover.bench.sinusoid.core import EVAL_STEPS, KS, ROWS
from landcover.cli import main


@pytest.mark.slow
def test_quick_run_writes_every_row_with_finite_numbers(tmp_path, capsys):
    out = tmp_path / "res.json"
    assert main(["bench", "sinusoid", "--quick", "--json", str(out), "--out", str(tmp_path)]) == 0
    payload = json.loads(out.read_text())
    assert [r["label"] for r in payload["rows"]] == [r.label for r in ROWS]
    for row in payload["rows"]:
        for k in KS:
            for steps in EVAL_STEPS:
                cell = row["results"][str(k)][str(steps)]
                assert cell["mse"] is not None and math.isfinite(cell["mse"]), (
                    row["label"],
                    k,
                    steps,
                )
                assert cell["ci95"] > 0
    maml = next(r for r in payload["rows"] if r["label"] == "MAML")
    assert maml["train_seconds"] > 0 and maml["iterations"] > 0
    assert set(payload["vs_anchors"]) == {"MAML", "Meta-SGD"}
    assert (tmp_path / "adapted_curves.png").stat().st_size > 10_000
    assert "MAML" in capsys.readouterr().out
