"""``landcover bench strokes`` end to end on the real Dubai tiles, at smoke size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from landcover.bench.cli import main as bench_main
from landcover.inference.bundle import ModelBundle


@pytest.mark.slow
def test_strokes_bench_smoke(shared_data: Path, tmp_path: Path, capsys) -> None:
    root = shared_data / "dubai-aerial"
    if not root.is_dir():
        pytest.skip("dubai-aerial not in the shared data")
    out = tmp_path / "strokes.json"
    rc = bench_main([
        "strokes", "--root", str(root), "--folds", "Tile 4", "--scale", "0.1", "--tile", "32",
        "--meta-steps", "1", "--meta-batch", "1", "--tasks", "2", "--json", str(out),
        "--plot", str(tmp_path / "strokes.png"), "--bundle", str(tmp_path / "s.bundle"),
    ])  # fmt: skip
    assert rc == 0
    result = json.loads(out.read_text())["results"]["Tile 4"]
    for trained in ("full masks", "strokes"):
        rows = result[trained]
        assert set(rows) == {"none", "full masks", "strokes", "points"}
        assert rows["full masks"]["labeled_fraction"] > 0.9
        assert 0 < rows["points"]["labeled_fraction"] < rows["strokes"]["labeled_fraction"] < 0.3
        assert all(0 <= r["miou"] <= 1 for r in rows.values())
    assert (tmp_path / "strokes.png").stat().st_size > 10_000
    bundle = ModelBundle.load(tmp_path / "s.bundle")
    assert bundle.scheme().names == ("building", "land", "road", "vegetation", "water")
    assert "| Tile 4 | strokes |" in capsys.readouterr().out
