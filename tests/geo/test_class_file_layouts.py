"""Class files as labelling tools export them: Supervisely's project meta (Humans in the
Loop's ``classes.json``), hex colours, and the message when a class file's colours do not
match its masks. Every fixture is written here: a ``classes.json`` / ``classes.yaml`` and
RGB or palette ("P") PNG masks with JPEG images."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from landcover.cli import main as landcover
from landcover.geo.classes import ClassScheme
from landcover.geo.errors import GeoDataError, MaskValueError
from landcover.geo.folder import find_problems, read_regions

#: The masks' colours (Dubai's real ones) and Supervisely's grey "Unlabeled".
BUILDING, LAND, WATER, GREY = (60, 16, 152), (132, 41, 246), (226, 169, 41), (155, 155, 155)


def _hex(c: tuple[int, int, int]) -> str:
    return "#" + "".join(f"{v:02X}" for v in c)


def supervisely_meta(colours: dict[str, tuple[int, int, int]]) -> dict[str, Any]:
    """A project meta as Supervisely writes it, every documented key present."""
    classes = [
        {"title": t, "shape": "bitmap", "color": _hex(c), "geometry_config": {}, "id": 100 + i,
         "hotkey": "", "description": ""}
        for i, (t, c) in enumerate(colours.items())
    ]  # fmt: skip
    classes[0]["color"] = classes[0]["color"].lower()  # hex of either case
    return {
        "classes": classes,
        "tags": [{"name": "q", "value_type": "none", "color": "#A0A08C"}],
        "projectType": "images",
        "projectSettings": {"multiView": {"enabled": False}},
    }


#: Class index -> mask colour of the truth arrays below (3 = Unlabeled).
CODES = [BUILDING, LAND, WATER, GREY]


def write_region(root: Path, name: str, truth: np.ndarray, palette: bool) -> Path:
    """One tile: a JPEG image and an RGB or palette PNG mask painting ``truth`` in CODES."""
    for sub in ("images", "masks"):
        (root / name / sub).mkdir(parents=True)
    img = np.random.default_rng(1).integers(0, 255, (*truth.shape, 3), dtype=np.uint8)
    Image.fromarray(img).save(root / name / "images" / "t.jpg")
    mask = root / name / "masks" / "t.png"
    if palette:  # palette order differs from the class order on purpose
        order = [2, 0, 3, 1]  # class k is palette index order[k]
        p = Image.fromarray(np.asarray(order, np.uint8)[truth], mode="P")
        flat = [v for k in np.argsort(order) for v in CODES[k]]
        p.putpalette(flat + [7, 7, 7] * (256 - len(CODES)))
        p.save(mask)
        assert Image.open(mask).mode == "P"
    else:
        Image.fromarray(np.asarray(CODES, np.uint8)[truth]).save(mask)
    return mask


TRUTH = np.array([[0, 1, 2, 3, 1], [1, 1, 0, 0, 2], [3, 2, 1, 0, 1]])


def test_supervisely_meta_reads_rgb_and_palette_masks(tmp_path: Path) -> None:
    meta = supervisely_meta({"Building": BUILDING, "Land (unpaved area)": LAND,
                             "Water": WATER, "Unlabeled": GREY})  # fmt: skip
    (tmp_path / "classes.json").write_text(json.dumps(meta, indent=2))
    write_region(tmp_path, "a_rgb", TRUTH, palette=False)
    write_region(tmp_path, "b_pal", TRUTH, palette=True)
    regions = read_regions(tmp_path)
    scheme = regions[0].scheme
    assert scheme.names == ("Building", "Land (unpaved area)", "Water")
    assert scheme.colors == (BUILDING, LAND, WATER) and scheme.encoding == "color"
    assert scheme.ignore_values == (GREY,)
    expected = np.where(TRUTH == 3, 255, TRUTH)
    for r in regions:
        assert r[0]["mask"].numpy().tolist() == expected.tolist(), r.name
    assert scheme.source == tmp_path / "classes.json"
    assert ClassScheme.from_dict(scheme.to_dict()) == scheme  # survives a bundle


@pytest.mark.parametrize("title", ["Unlabeled", "unlabelled", "UNLABELED", " Unlabelled "])
def test_supervisely_unlabeled_title_is_the_ignore_colour(title: str) -> None:
    meta = supervisely_meta({"Water": WATER, title: GREY, "Road": LAND})
    s = ClassScheme.from_dict(meta | {"ignore": [[0, 0, 0]]})
    assert s.names == ("Water", "Road") and s.colors == (WATER, LAND)
    assert s.ignore_values == ((0, 0, 0), GREY)  # the file's own ignore kept, grey added


@pytest.mark.parametrize("name", ["Background", "Unknown", "unlabeled-ish"])
def test_other_titles_and_our_own_names_stay_classes(name: str) -> None:
    s = ClassScheme.from_dict(supervisely_meta({"Water": WATER, name: GREY}))
    assert s.names == ("Water", name) and s.ignore_values == ()
    classes = [{"name": "water", "color": "#E2A929"}, {"name": "Unlabeled", "color": "#9B9B9B"}]
    own = ClassScheme.from_dict({"classes": classes})
    assert own.names == ("water", "Unlabeled") and own.ignore_values == ()


def test_name_wins_over_title() -> None:
    classes = [{"name": "water", "title": "Unlabeled", "color": "#E2A929"},
               {"title": "b", "color": [1, 2, 3]}]  # fmt: skip
    s = ClassScheme.from_dict({"classes": classes})
    assert s.names == ("water", "b") and s.ignore_values == ()


def test_hex_colours_in_our_own_schema(tmp_path: Path) -> None:
    path = tmp_path / "classes.yaml"
    path.write_text(
        "classes:\n  - {name: building, color: '#3C1098'}\n  - {name: land, color: '#8429f6'}\n"
        "  - {name: water, color: [226, 169, 41]}\nignore: ['#9B9B9B', [0, 0, 0]]\n"
    )
    s = ClassScheme.from_file(path)
    assert s.colors == (BUILDING, LAND, WATER)
    assert s.ignore_values == (GREY, (0, 0, 0))
    path.write_text("classes: [{name: a, color: '#3C1098'}]\nignore: '#9b9b9b'\n")
    assert ClassScheme.from_file(path).ignore_values == (GREY,)
    path.write_text("classes:\n  - name: a\n    color: #3C1098\n")  # a YAML comment
    with pytest.raises(GeoDataError, match=r"'classes\[0\].color'.*quote a hex colour"):
        ClassScheme.from_file(path)


@pytest.mark.parametrize(
    ("entry", "top", "field", "says"),
    [
        ({"color": "#12345"}, {}, "'classes[0].color'", "5 hex digits, need 6"),
        ({"color": "#GG0000"}, {}, "'classes[0].color'", "'G' is not a hex digit"),
        ({"color": "3C1098"}, {}, "'classes[0].color'", "starts with '#'"),
        ({"color": "#1234567"}, {}, "'classes[0].color'", "7 hex digits"),
        ({"color": 5}, {}, "'classes[0].color'", "'#0000FF'"),
        ({"shape": 5}, {}, "'classes[0].shape'", "must be text"),
        ({"geometry_config": []}, {}, "'classes[0].geometry_config'", "a mapping"),
        ({"id": "seven"}, {}, "'classes[0].id'", "an integer"),
        ({"id": True}, {}, "'classes[0].id'", "an integer"),
        ({"hotkey": 3}, {}, "'classes[0].hotkey'", "must be text"),
        ({"description": ["x"]}, {}, "'classes[0].description'", "must be text"),
        ({"colour": "#123456"}, {}, "'classes[0].colour'", "unknown key"),
        ({"title": ""}, {}, "'classes[0].title'", "needs a 'name'"),
        ({}, {"tags": {}}, "'tags'", "a list"),
        ({}, {"projectType": 1}, "'projectType'", "must be text"),
        ({}, {"projectSettings": []}, "'projectSettings'", "a mapping"),
        ({}, {"ignore": "#12"}, "'ignore'", "2 hex digits"),
        ({}, {"ignore": ["#9B9B9B", "#XYZXYZ"]}, "'ignore[1]'", "'X' is not a hex digit"),
        ({}, {"project": "x"}, "'project'", "unknown key"),
    ],
)
def test_malformed_fields_name_file_and_field(
    tmp_path: Path, entry: dict[str, Any], top: dict[str, Any], field: str, says: str,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    meta = supervisely_meta({"Water": WATER, "Land": LAND})
    meta["classes"][0].update(entry)
    meta.update(top)
    write_region(tmp_path, "r", TRUTH, palette=False)
    path = tmp_path / "classes.json"
    path.write_text(json.dumps(meta))
    with pytest.raises(GeoDataError) as err:
        ClassScheme.from_file(path)
    msg = str(err.value)
    assert str(path) in msg and field in msg and says in msg, msg
    if "hex" in says:
        assert "'#3C1098'" in msg  # an example of the right form
    assert landcover(["data", "inspect", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert field in captured.err and "Traceback" not in captured.err


def test_only_unlabeled_is_not_a_class_file(tmp_path: Path) -> None:
    path = tmp_path / "classes.json"
    path.write_text(json.dumps(supervisely_meta({"Unlabeled": GREY})))
    with pytest.raises(GeoDataError, match=r"'classes'.*only 'Unlabeled'"):
        ClassScheme.from_file(path)


def test_wrong_colours_are_named_per_mask_with_pixel_counts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the class file's colours are not the masks' (as dubai-aerial ships): only grey matches
    wrong = {"Building": (208, 2, 27), "Land": (245, 166, 35), "Water": (80, 227, 194),
             "Unlabeled": GREY}  # fmt: skip
    (tmp_path / "classes.json").write_text(json.dumps(supervisely_meta(wrong)))
    rgb = write_region(tmp_path, "a_rgb", TRUTH, palette=False)
    pal = write_region(tmp_path, "b_pal", TRUTH, palette=True)
    pixels = {BUILDING: 4, LAND: 6, WATER: 3}
    assert np.bincount(TRUTH.ravel()).tolist()[:3] == list(pixels.values())
    problems = find_problems(tmp_path)
    assert [p.path for p in problems] == [rgb, pal]  # every bad mask, in one run
    for p in problems:
        assert isinstance(p, MaskValueError)
        assert p.counts == pixels  # palette masks count pixels, not palette entries
        assert p.matched == 0 and p.pixels == TRUTH.size
        assert p.class_file == tmp_path / "classes.json"
    with pytest.raises(MaskValueError) as err:
        read_regions(tmp_path)
    msg = str(err.value)
    assert str(rgb) in msg and str(tmp_path / "classes.json") in msg
    assert "(132, 41, 246) (6 px), (60, 16, 152) (4 px), (226, 169, 41) (3 px)" in msg
    assert "Not one of its pixels has a class's colour" in msg and "do not match" in msg
    assert "--classes FILE" in msg and "landcover data inspect" in msg
    assert "(208, 2, 27) (Building)" in msg and "(155, 155, 155) (ignore)" in msg

    assert landcover(["data", "inspect", str(tmp_path)]) == 2
    out = capsys.readouterr().err
    assert "Traceback" not in out and "2 problem(s)" in out
    flat = " ".join(out.split())
    assert "2 mask(s) hold colours in no class" in flat
    assert "(132, 41, 246) (12 px), (60, 16, 152) (8 px), (226, 169, 41) (6 px)" in flat
    assert "- {name: CLASS_1, color: [132, 41, 246]}" in out  # a class file to start from
    assert "ignore: [[155, 155, 155]]" in out

    # with the masks' colours given by --classes the same folder reads
    good = tmp_path / "good.yaml"
    good.write_text(
        "classes:\n  - {name: building, color: '#3C1098'}\n  - {name: land, color: '#8429F6'}\n"
        "  - {name: water, color: '#E2A929'}\nignore: '#9B9B9B'\n"
    )
    assert find_problems(tmp_path, classes=good) == []
    assert landcover(["data", "inspect", str(tmp_path), "--classes", str(good)]) == 0


def test_partly_matching_colours_do_not_claim_a_wrong_class_file(tmp_path: Path) -> None:
    meta = supervisely_meta({"Building": BUILDING, "Land": LAND, "Unlabeled": GREY})
    (tmp_path / "classes.json").write_text(json.dumps(meta))
    mask = write_region(tmp_path, "r", TRUTH, palette=True)  # water is in no class
    with pytest.raises(MaskValueError) as err:
        read_regions(tmp_path)
    assert err.value.counts == {WATER: 3} and err.value.matched == 10
    assert str(mask) in str(err.value) and "Not one" not in str(err.value)


DUBAI = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "dubai-aerial"


@pytest.mark.skipif(not DUBAI.is_dir(), reason="the shared dubai-aerial data is not here")
def test_dubai_aerial_shipped_class_file_reads_and_its_colours_are_reported() -> None:
    s = ClassScheme.from_file(DUBAI / "classes.json")
    assert s.names == ("Water", "Land (unpaved area)", "Road", "Building", "Vegetation")
    assert s.colors[0] == (80, 227, 194) and s.ignore_values == (GREY,)
    problems = find_problems(DUBAI / "Tile 2")  # palette masks
    assert len(problems) == 9 and all(isinstance(p, MaskValueError) for p in problems)
    assert all(p.matched == 0 and BUILDING in p.counts for p in problems)  # type: ignore[attr-defined]
