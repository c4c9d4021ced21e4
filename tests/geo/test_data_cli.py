from __future__ import annotations

from pathlib import Path

import pytest

from landcover.cli import main as landcover
from landcover.geo.fixtures import write_deepglobe_fixture, write_sen12ms_fixture
from landcover.geo.normalize import BandStats


def test_synth_inspect_plot_stats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "synth"
    argv = ["data", "synth", "--out", str(out), "--regions", "3", "--seed", "4", "--quiet",
            "--tiles-per-region", "4", "--tile-size", "16", "--signature-shift", "1.2",
            "--texture-scale", "1", "3"]  # fmt: skip
    assert landcover(argv) == 0
    assert "wrote 3 regions × 4 tiles" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == [
        "classes.yaml",
        "region_000",
        "region_001",
        "region_002",
        "synth.json",
    ]
    assert '"signature_shift": 1.2' in (out / "synth.json").read_text()
    png = tmp_path / "plot.png"
    assert landcover(["data", "inspect", str(out), "--plot", str(png)]) == 0
    text = capsys.readouterr().out
    assert "region_002" in text and "EPSG:32632" in text and "forest %" in text and "16×16" in text
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"
    assert landcover(["data", "stats", str(out), "--out", str(tmp_path / "s.json")]) == 0
    assert BandStats.load(tmp_path / "s.json").band_names == ("B02", "B03", "B04", "B08")
    # existing output is refused with a clear message and exit status 2
    assert landcover(argv) == 2
    assert "not empty" in capsys.readouterr().err


def test_inspect_detects_formats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_sen12ms_fixture(tmp_path / "sen", scenes=(1, 8), patches=2, size=16)
    assert landcover(["data", "inspect", str(tmp_path / "sen")]) == 0
    assert "ROIs1970_fall_8" in capsys.readouterr().out
    write_deepglobe_fixture(tmp_path / "dg", images=4, size=32)
    assert landcover(["data", "inspect", str(tmp_path / "dg"), "--kind", "deepglobe"]) == 0
    assert "cluster_00" in capsys.readouterr().out
    assert landcover(["data", "inspect", str(tmp_path / "missing")]) == 2
    assert "not found" in capsys.readouterr().err
