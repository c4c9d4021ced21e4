from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from landcover.geo.classes import ClassScheme
from landcover.geo.errors import GeoDataError, MaskValueError


def test_value_encoding_maps_values_and_ignore() -> None:
    s = ClassScheme(names=("a", "b", "c"), values=(5, 7, 9), ignore_value=0)
    raw = np.array([[5, 7], [9, 0]])
    assert s.encode(raw).tolist() == [[0, 1], [2, 255]]


def test_unknown_values_error_names_file_values_and_counts() -> None:
    s = ClassScheme(names=("a", "b"), values=(1, 2))
    raw = np.array([[1, 3, 3], [4, 2, 3]])
    with pytest.raises(MaskValueError) as err:
        s.encode(raw, source="masks/t1.png")
    assert err.value.counts == {3: 3, 4: 1}
    msg = str(err.value)
    assert "masks/t1.png" in msg and "3 (3 px)" in msg and "4 (1 px)" in msg


def test_color_encoding_with_threshold() -> None:
    s = ClassScheme(
        names=("red", "green"),
        colors=((255, 0, 0), (0, 255, 0)),
        encoding="color",
        ignore_value=(0, 0, 0),
        threshold=128,
    )
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[0, 0] = (250, 3, 40)  # red after thresholding
    rgb[0, 1] = (127, 200, 100)  # green
    rgb[1, 0] = (100, 20, 120)  # black -> ignore
    rgb[1, 1] = (129, 129, 0)  # yellow: not a class
    with pytest.raises(MaskValueError) as err:
        s.encode(rgb, source="m.png")
    assert err.value.counts == {(255, 255, 0): 1}
    rgb[1, 1] = (200, 0, 0)
    assert s.encode(rgb).tolist() == [[0, 1], [255, 0]]
    assert s.encode(rgb.transpose(2, 0, 1)).tolist() == [[0, 1], [255, 0]]  # (3, H, W) too


def test_class_file_round_trip_yaml_and_json(tmp_path: Path) -> None:
    s = ClassScheme(
        names=("w", "f"), values=(1, 2), colors=((0, 0, 255), (0, 128, 0)), ignore_value=0
    )
    for name in ("classes.yaml", "classes.json"):
        assert ClassScheme.from_file(s.save(tmp_path / name)) == s


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("classes: [{name: a, value: 1}, {name: b, color: [1, 2, 3]}]", "mixes"),
        ("classes: [{value: 1}]", "needs a 'name'"),
        ("nothing: here", "'classes' list"),
        ("classes: [{name: a, value: 1}, {name: a, value: 2}]", "unique"),
        ("classes: [{name: a, value: 1}]\nignore: 1", "also a class value"),
        ("classes: [: bad yaml", "cannot read"),
    ],
)
def test_bad_class_files(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "classes.yaml"
    path.write_text(content)
    with pytest.raises(GeoDataError, match=match) as err:
        ClassScheme.from_file(path)
    assert str(path) in str(err.value)


def test_colorize_and_colormap() -> None:
    s = ClassScheme(names=("a", "b"), values=(1, 2), colors=((10, 20, 30), (40, 50, 60)))
    out = s.colorize(np.array([[0, 1, 255]]))
    assert out.tolist() == [[[10, 20, 30], [40, 50, 60], [0, 0, 0]]]
    assert s.colormap(nodata=255)[255] == (0, 0, 0, 0)


def test_remapped_lut() -> None:
    s = ClassScheme(names=("a", "b", "c"), values=(1, 2, 3))
    sub, lut = s.remapped([2, 0])
    assert sub.names == ("c", "a")
    assert lut[[0, 1, 2, 255]].tolist() == [1, 255, 0, 255]
