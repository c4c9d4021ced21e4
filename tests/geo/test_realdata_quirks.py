"""Real data as it comes: palette masks, several ignore colours, bad class files, every
problem in one run, DeepGlobe in both layouts. Each fixture is written in the exact on-disk
format of the quirk (PIL palette PNGs, JPEG images, torchgeo's folders)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from landcover.cli import main as landcover
from landcover.geo.classes import ClassScheme
from landcover.geo.datasets import detect_kind, load_regions
from landcover.geo.deepglobe import DeepGlobe
from landcover.geo.errors import GeoDataError, MaskValueError
from landcover.geo.fixtures import write_deepglobe_fixture, write_folder_fixture
from landcover.geo.folder import find_problems, read_regions

#: Dubai-like classes: two are listed, grey and black are unlabeled.
COLOURS = {"building": (60, 16, 152), "land": (132, 41, 246)}
CLASS_FILE = (
    "classes:\n  - {name: building, color: [60, 16, 152]}\n"
    "  - {name: land, color: [132, 41, 246]}\nignore: [[155, 155, 155], [0, 0, 0]]\n"
)


def _region(root: Path, name: str, truth: np.ndarray, palette_order: list[tuple[int, ...]]
            | None) -> None:  # fmt: skip
    """Write one tile: a JPEG image and an RGB or palette PNG mask of ``truth`` (0, 1, 2, 3 =
    building, land, grey, black)."""
    colours = [COLOURS["building"], COLOURS["land"], (155, 155, 155), (0, 0, 0)]
    (root / name / "images").mkdir(parents=True)
    (root / name / "masks").mkdir(parents=True)
    img = np.random.default_rng(0).integers(0, 255, (*truth.shape, 3), dtype=np.uint8)
    Image.fromarray(img).save(root / name / "images" / "t.jpg")
    if palette_order is None:
        rgb = np.asarray(colours, dtype=np.uint8)[truth]
        Image.fromarray(rgb).save(root / name / "masks" / "t.png")
        return
    order = [palette_order.index(c) for c in colours]  # class -> palette index
    p = Image.fromarray(np.asarray(order, dtype=np.uint8)[truth], mode="P")
    flat = [v for c in palette_order for v in c]
    p.putpalette(flat + [255, 255, 255] * (256 - len(palette_order)))  # unused: white
    p.save(root / name / "masks" / "t.png")


def test_palette_and_rgb_masks_with_several_ignore_colours(tmp_path: Path) -> None:
    truth = np.array([[0, 1, 2, 3], [1, 1, 0, 0], [3, 2, 1, 0]])
    grey, black = (155, 155, 155), (0, 0, 0)
    _region(tmp_path, "rgb", truth, None)
    _region(tmp_path, "pal_a", truth, [COLOURS["land"], grey, COLOURS["building"], black])
    _region(tmp_path, "pal_b", truth, [black, COLOURS["building"], grey, COLOURS["land"]])
    (tmp_path / "classes.yaml").write_text(CLASS_FILE)
    assert Image.open(tmp_path / "pal_a" / "masks" / "t.png").mode == "P"
    regions = read_regions(tmp_path)
    expected = torch.from_numpy(np.where(truth >= 2, 255, truth))
    for r in regions:  # palette order differs per file; the classes do not
        assert torch.equal(r[0]["mask"], expected), r.name
    scheme = regions[0].scheme
    assert scheme.ignore_values == (grey, black)
    assert ClassScheme.from_dict(scheme.to_dict()) == scheme  # survives a bundle


def test_palette_colour_not_in_class_file_is_named(tmp_path: Path) -> None:
    truth = np.array([[0, 1], [1, 0]])
    _region(tmp_path, "r", truth, [COLOURS["building"], (155, 155, 155), COLOURS["land"],
                                   (0, 0, 0), (9, 9, 9)])  # fmt: skip
    (tmp_path / "classes.yaml").write_text(CLASS_FILE.replace("[0, 0, 0]", "[1, 2, 3]"))
    # palette entries no pixel uses ((9, 9, 9), black) do not matter; used colours decide
    assert read_regions(tmp_path)[0][0]["mask"].tolist() == [[0, 1], [1, 0]]
    truth[0, 0] = 3  # now a black pixel, and black is not in this class file
    _region(tmp_path, "s", truth, [COLOURS["building"], COLOURS["land"], (155, 155, 155),
                                   (0, 0, 0)])  # fmt: skip
    with pytest.raises(MaskValueError, match=r"\(0, 0, 0\) \(1 px\)") as err:
        read_regions(tmp_path)
    assert "s/masks/t.png" in str(err.value)


def test_several_ignore_values_for_value_masks() -> None:
    s = ClassScheme.from_dict({"classes": [{"name": "a", "value": 1}, {"name": "b", "value": 2}],
                               "ignore": [0, 99]})  # fmt: skip
    assert s.encode(np.array([[1, 0], [99, 2]], dtype=np.uint8)).tolist() == [[0, 255], [255, 1]]
    assert s.to_dict()["ignore"] == [0, 99]


@pytest.mark.parametrize(
    ("content", "field"),
    [
        ("classes: [{name: a, color: [1, 2, 3]}]\nignore: {color: [0, 0, 0]}", "'ignore'"),
        ("classes: [{name: a, color: [1, 2, 3]}]\nignore: [[0, 0, 0], [1, 2]]", "'ignore[1]'"),
        ("classes: [{name: a, color: [1, 2, 3]}]\nignore: 5", "'ignore'"),
        ("classes: [{name: a, value: 1}]\nignore: [0, x]", "'ignore[1]'"),
        ("classes: [{name: a, color: [1, 2, 3, 4]}]", "'classes[0].color'"),
        ("classes: [{name: a, color: [1, 2, 300]}]", "'classes[0].color[2]'"),
        ("classes: [{name: a, value: one}]", "'classes[0].value'"),
        ("classes: [{name: a, value: 1.5}]", "'classes[0].value'"),
        ("classes: [{name: a, value: 1}, {name: b}]", "'classes[1]'"),
        ("classes: [{nom: a, value: 1}]", "'classes[0].nom'"),
        ("classes: [a, b]", "'classes[0]'"),
        ("classes: {a: 1}", "'classes'"),
        ("classes: []", "'classes'"),
        ("classes: [{name: a, value: 1}]\nthreshold: 300", "'threshold'"),
        ("classes: [{name: a, value: 1}]\nignore_index: x", "'ignore_index'"),
        ("classes: [{name: a, value: 1}]\ncolours: []", "'colours'"),
        ("- just\n- a list", "a mapping"),
    ],
)
def test_malformed_class_file_names_file_and_field(
    tmp_path: Path, content: str, field: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write_folder_fixture(tmp_path / "d", regions=1, tiles=1, size=8)
    path = root / "classes.yaml"
    path.write_text(content)
    with pytest.raises(GeoDataError) as err:
        ClassScheme.from_file(path)
    assert str(path) in str(err.value) and field in str(err.value)
    assert landcover(["data", "inspect", str(root)]) == 2  # a message, no traceback
    captured = capsys.readouterr()
    assert field in captured.err and "Traceback" not in captured.err


def test_inspect_reports_every_bad_file_in_one_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write_folder_fixture(tmp_path / "d", regions=2, tiles=3, size=8, image_format="png")
    (root / "region_0" / "masks" / "tile_01.png").unlink()  # image without mask
    bad = root / "region_1" / "masks" / "tile_00.png"
    Image.fromarray(np.full((8, 8), 77, np.uint8)).save(bad)  # value not in the class file
    Image.fromarray(np.zeros((5, 8), np.uint8)).save(root / "region_1" / "masks" / "tile_02.png")
    (root / "region_1" / "images" / "tile_01.png").write_bytes(b"not a png")
    problems = find_problems(root)
    named = sorted(str(p.path.relative_to(root)) for p in problems)
    assert named == [
        "region_0/images/tile_01.png",
        "region_1/images/tile_01.png",
        "region_1/masks/tile_00.png",
        "region_1/masks/tile_02.png",
    ]
    assert landcover(["data", "inspect", str(root)]) == 2
    err = capsys.readouterr().err
    assert "4 problem(s)" in err and "77" in err and "has no mask" in err


def test_deepglobe_torchgeo_layout(tmp_path: Path) -> None:
    flat = write_deepglobe_fixture(tmp_path / "flat", images=6, size=32, train_subdir=False)
    root = tmp_path / "tg"
    sats = sorted(flat.glob("*_sat.jpg"))
    for split, ids in (("training_data", slice(0, 4)), ("test_data", slice(4, 6))):
        for sub in ("images", "masks"):
            (root / "data" / split / sub).mkdir(parents=True)
        for sat in sats[ids]:
            mask = sat.with_name(sat.name.replace("_sat.jpg", "_mask.png"))
            sat.rename(root / "data" / split / "images" / sat.name)
            mask.rename(root / "data" / split / "masks" / mask.name)
    assert detect_kind(root) == "deepglobe" and detect_kind(root / "data") == "deepglobe"
    regions = load_regions(root, n_regions=2)
    assert sum(len(r) for r in regions) == 6
    sample = regions[0][0]
    assert sample["image"].shape == (3, 32, 32) and sample["mask"].shape == (32, 32)
    assert len(DeepGlobe(root / "data", n_regions=2).assignment) == 6


def test_deepglobe_lookalike_gets_a_deepglobe_error(tmp_path: Path) -> None:
    root = tmp_path / "tg"
    (root / "data" / "training_data" / "images").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(root / "data" / "training_data" / "images" / "1_sat.jpg")
    with pytest.raises(GeoDataError, match="torchgeo's DeepGlobe layout but has no masks/"):
        load_regions(root)
    png = tmp_path / "png"
    png.mkdir()
    Image.new("RGB", (8, 8)).save(png / "1_sat.png")
    Image.new("RGB", (8, 8)).save(png / "1_mask.png")
    assert detect_kind(png) == "deepglobe"
    with pytest.raises(GeoDataError, match=r"found \['1_sat.png'\].*JPEG"):
        load_regions(png)
    flat = write_deepglobe_fixture(tmp_path / "flat", images=2, size=16, train_subdir=True)
    next((flat / "train").glob("*_mask.png")).unlink()
    with pytest.raises(GeoDataError, match="image has no mask"):
        load_regions(flat)


DUBAI = Path(__file__).resolve().parents[2] / "data" / "samples" / "dubai-aerial"
DUBAI_CLASSES = Path(__file__).resolve().parents[2] / "configs" / "classes" / "dubai-aerial.yaml"


@pytest.mark.skipif(not DUBAI.is_dir(), reason="the dubai-aerial sample is not here")
def test_dubai_aerial_palette_tile_reads_with_its_class_file() -> None:
    (region,) = read_regions(DUBAI / "Tile 2", classes=DUBAI_CLASSES, cache=False)
    assert len(region) == 9 and region.scheme.num_classes == 5
    counts = region.class_histogram()
    assert (counts[:5] > 0).all()  # every class is seen through the palettes
