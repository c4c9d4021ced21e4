"""Manifest validation: every problem names its entry and field and says what to do."""

from __future__ import annotations

from pathlib import Path

import pytest

from landcover.batch import cli
from landcover.batch.errors import ManifestError
from landcover.batch.manifest import load_manifest


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(text)
    return path


GOOD_REGION = "  - name: ok\n    adapted: a.bundle\n    scenes: [x.tif]\n"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (GOOD_REGION + "  - name: two\n    bundle: m.bundle\n    scenes: [x.tif]\n",
         ["regions[1] ('two')", "'support: FOLDER'"]),
        (GOOD_REGION + "  - name: three\n    adapted: a.bundle\n",
         ["regions[1] ('three')", "lists no scenes"]),
        (GOOD_REGION + "  - name: four\n    adapted: a.bundle\n    scenes: [x]\n    stepz: 3\n",
         ["regions[1] ('four'), field 'stepz'", "Extra inputs are not permitted"]),
        (GOOD_REGION + "  - name: five\n    adapted: a.bundle\n    scenes: [x]\n"
         "    predict: {window: 64, overlap: 64}\n",
         ["regions[1] ('five'), field 'predict'", "overlap (64) must be smaller than window"]),
        (GOOD_REGION + "  - name: 'a/b'\n    adapted: a.bundle\n    scenes: [x]\n",
         ["regions[1] ('a/b'), field 'name'", "folder-safe"]),
        (GOOD_REGION + GOOD_REGION, ["name 'ok' is used twice"]),
        ("output: out\nretries: -1\n" "regions:\n" + GOOD_REGION,
         ["manifest, field 'retries'", "greater than or equal to 0"]),
        ("regions:\n" + GOOD_REGION, ["manifest, field 'output'", "Field required"]),
        ("output: out\nregions: []\n", ["manifest, field 'regions'"]),
    ],
)  # fmt: skip
def test_errors_name_entry_and_field(tmp_path, body, expected) -> None:
    text = body if body.startswith(("output", "regions")) else f"output: out\nregions:\n{body}"
    with pytest.raises(ManifestError) as err:
        load_manifest(_write(tmp_path, text))
    for part in expected:
        assert part in str(err.value)


def test_not_yaml_and_missing(tmp_path) -> None:
    with pytest.raises(ManifestError, match="manifest not found"):
        load_manifest(tmp_path / "nope.yaml")
    with pytest.raises(ManifestError, match="not valid YAML"):
        load_manifest(_write(tmp_path, "regions: [\n"))
    with pytest.raises(ManifestError, match="must be a mapping"):
        load_manifest(_write(tmp_path, "- a\n- b\n"))


def test_paths_relative_to_manifest(tmp_path) -> None:
    m = load_manifest(_write(tmp_path, "output: out\nregions:\n" + GOOD_REGION))
    assert m.path(m.output) == tmp_path.resolve() / "out"
    assert m.options(m.regions[0]).cog and m.options(m.regions[0]).style


def test_cli_reports_bad_files_before_any_work(tmp_path, capsys) -> None:
    from landcover.inference.testing import tiny_bundle

    tiny_bundle().save(tmp_path / "meta.bundle")
    path = _write(tmp_path, "output: out\nregions:\n  - name: r\n    adapted: meta.bundle\n"
                            "    scenes: [x.tif]\n")  # fmt: skip
    assert cli.main([str(path), "--workers", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "regions[0] ('r'), field 'adapted'" in err and "meta-learned bundle" in err
    path.write_text(path.read_text().replace("adapted: meta.bundle", "adapted: gone.bundle"))
    assert cli.main([str(path), "--workers", "1", "--quiet"]) == 2
    assert "regions[0] ('r'), field 'adapted'" in capsys.readouterr().err
    assert cli.main([str(path), "--workers", "0"]) == 2
    assert "--workers must be at least 1" in capsys.readouterr().err
