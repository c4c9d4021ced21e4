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


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--arch", "nosuch"], "unknown architecture 'nosuch'"),
        (["--size", "0"], "--size >= 1"),
        (["--steps", "-1", "--tasks", "0"], "--steps >= 0, --tasks >= 1"),
    ],
)
def test_bad_settings_fail_at_once_with_a_clear_error(args, says, capsys, monkeypatch):
    import landcover.bench.meta_step as ms

    def no_subprocess(*_: object) -> None:
        raise AssertionError("a configuration ran despite bad settings")

    monkeypatch.setattr(ms, "_run_config", no_subprocess)
    assert main(["bench", "meta-step", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("landcover bench meta-step: error: ") and says in err
    assert "Traceback" not in err


def test_a_failed_configuration_is_reported_and_exits_1(capsys, monkeypatch):
    import landcover.bench.meta_step as ms

    monkeypatch.setattr(ms, "_run_config", lambda cfg, s: {"error": "RuntimeError: boom"})
    assert main(["bench", "meta-step", "--only", "FOMAML, loop"]) == 1
    out = capsys.readouterr().out
    assert "FOMAML, loop failed: RuntimeError: boom" in out
