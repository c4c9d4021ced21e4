from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from landcover.bench import batch as bench

pytestmark = pytest.mark.timeout(180)


def _args(**kw) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args([])
    for k, v in kw.items():
        setattr(args, k, v)
    return args


def test_defaults_are_the_issue_sizes() -> None:
    args = _args()
    assert (args.scenes, args.size, args.big, args.workers) == (8, 4096, 16384, "1,2")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"workers": "1,x"}, "numbers separated by commas"),
        ({"workers": "0,2"}, "at least 1"),
        ({"scenes": 0}, "--scenes"),
        ({"big": 10}, "--big"),
        ({"block_pixels": 1000}, "--block-pixels"),
    ],
)
def test_bad_settings(settings, message) -> None:
    with pytest.raises(ValueError, match=message):
        bench._check(_args(**settings))


def test_small_run_reports_identical_outputs(tmp_path: Path, capsys) -> None:
    args = _args(scenes=2, size=160, big=600, block_pixels=65536, workers="2",
                 json=str(tmp_path / "b.json"))  # fmt: skip
    assert bench.run(args) == 0
    rows = json.loads((tmp_path / "b.json").read_text())["rows"]
    assert [(r["case"], r["workers"]) for r in rows] == [
        ("many", 1), ("many", 2), ("many", 2), ("one-big", 1), ("one-big", 2)]  # fmt: skip
    # the ceiling: two plain predict processes at once, identical maps, half the scenes each
    ceiling = rows[1]
    assert ceiling["run"] == "landcover predict, 2 processes at once (ceiling)"
    assert ceiling["identical"] and ceiling["cpu_s"] > 0
    assert ceiling["speedup_vs_serial"] == pytest.approx(rows[0]["wall_s"] / ceiling["wall_s"])
    batch = [r for r in rows if "blocks" in r]
    assert all(r["identical"] for r in batch)
    # two scenes on two workers are not cut; one scene is cut into a block per worker
    assert batch[0]["blocks"] == 2 and batch[1]["blocks"] == 2
    assert rows[0]["pixels"] == 2 * 160 * 160
    assert len(rows[0]["per_scene_s"]) == 2
    assert all(r["cpu_s"] > 0 for r in rows)
    assert "| one-big | landcover batch, 2 worker(s) |" in capsys.readouterr().out
