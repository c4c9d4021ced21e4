"""Declared nodata of any value is honoured end to end (issue 23, item 1).

A scene whose nodata is a finite value (-99999 around the footprint of a float32 scene, 0
of a uint16 scene, an alpha band) must give exactly the map of the same scene with NaN
nodata: nodata pixels never reach the network (before, -99999 was normalised and fed in,
and rings of wrong classes grew along the nodata frame), and they are nodata in the map.
Masks: a declared nodata value is unlabeled unless the class file lists it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from landcover.cli import main as cli
from landcover.geo.classes import ClassScheme
from landcover.geo.folder import read_mask, read_region_folder
from landcover.geo.raster import read_raster
from landcover.inference.bundle import ModelBundle
from landcover.inference.predict import Predictor, predict_array
from landcover.inference.testing import tiny_bundle

NODATA = -99999.0


@pytest.fixture(scope="module")
def five_band(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 5-band bundle with a depth-3 U-Net (a receptive field that reaches the frame)."""
    bundle = tiny_bundle(5, 4, model_options={"width": 4, "depth": 3, "norm": "group"},
                         mean=0.3, std=0.1, seed=3)  # fmt: skip
    return bundle.save(tmp_path_factory.mktemp("bundle") / "five.bundle")


def _scene(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 5-band float32 scene (reflectances) and its footprint (a tilted quadrilateral)."""
    rng = np.random.default_rng(seed)
    img = rng.uniform(0.1, 0.5, (5, 120, 150)).astype(np.float32)
    rows, cols = np.mgrid[:120, :150]
    inside = (cols > 15 + rows // 4) & (cols < 140 - rows // 5) & (rows > 10) & (rows < 112)
    return img, inside


def _predict(bundle: Path, src: Path, out: Path, *extra: str) -> np.ndarray:
    assert cli(["predict", str(bundle), str(src), str(out), "--quiet", "--no-style",
                "--window", "64", "--overlap", "16", *extra]) == 0  # fmt: skip
    with rasterio.open(out) as d:
        return d.read(1)


@pytest.mark.parametrize("engine", ["torch", "onnxruntime"])
def test_finite_nodata_gives_the_map_of_nan_nodata(
    tmp_path: Path, write_tif, five_band: Path, engine: str
) -> None:
    """float32 with nodata -99999 vs the same scene with NaN nodata: identical maps, and
    nodata exactly where the footprint ends (before: -99999 entered the network)."""
    img, inside = _scene()
    finite = write_tif(tmp_path / "finite.tif", np.where(inside, img, NODATA), nodata=NODATA)
    nan = write_tif(tmp_path / "nan.tif", np.where(inside, img, np.nan), nodata=float("nan"))
    a = _predict(five_band, finite, tmp_path / "a.tif", "--engine", engine)
    b = _predict(five_band, nan, tmp_path / "b.tif", "--engine", engine)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a == 255, ~inside)


def test_per_band_nodata_is_nodata_in_the_map(tmp_path: Path, write_tif, five_band: Path) -> None:
    """A pixel where one band alone holds the nodata value is nodata: GDAL's dataset mask
    calls it valid (another band has data), and -99999 then reached the network."""
    img, inside = _scene(1)
    holes = np.zeros_like(inside)
    holes[40:60, 50:90] = True
    band2 = img.copy()
    band2[1, holes] = NODATA
    finite = write_tif(tmp_path / "band.tif", np.where(inside, band2, NODATA), nodata=NODATA)
    ref = np.where(inside & ~holes, img, np.nan)
    nan = write_tif(tmp_path / "nan.tif", ref, nodata=float("nan"))
    a = _predict(five_band, finite, tmp_path / "a.tif")
    np.testing.assert_array_equal(a == 255, ~inside | holes)
    np.testing.assert_array_equal(a, _predict(five_band, nan, tmp_path / "b.tif"))
    data = read_raster(finite)
    assert torch.equal(data.valid, torch.from_numpy(inside & ~holes))
    assert bool(data.image[:, ~data.valid].isnan().all())


def test_uint16_with_nodata_zero(tmp_path: Path, write_tif) -> None:
    """uint16 with nodata 0 (a Landsat/Sentinel product): the map of the float32 copy with
    NaN there, and nodata in the map."""
    bundle = tiny_bundle(4, 3, model_options={"width": 4, "depth": 3, "norm": "group"},
                         mean=3000.0, std=800.0, seed=2).save(tmp_path / "u16.bundle")  # fmt: skip
    rng = np.random.default_rng(4)
    dn = rng.integers(1500, 5000, (4, 100, 130)).astype(np.uint16)
    dn[:, :, :25] = 0
    dn[:, 80:, 100:] = 0
    inside = dn[0] > 0
    a = _predict(bundle, write_tif(tmp_path / "u16.tif", dn, nodata=0), tmp_path / "a.tif")
    ref = np.where(inside, dn.astype(np.float32), np.nan)
    b = _predict(bundle, write_tif(tmp_path / "f32.tif", ref, nodata=float("nan")),
                 tmp_path / "b.tif")  # fmt: skip
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a == 255, ~inside)


def test_alpha_band_pixels_never_reach_the_network(tmp_path: Path) -> None:
    """RGBA: what lies under alpha 0 (here bright garbage) does not change the map of the
    visible pixels: it equals the map of the RGB scene with NaN there."""
    bundle = tiny_bundle(3, 3, model_options={"width": 4, "depth": 3, "norm": "group"},
                         mean=100.0, std=40.0).save(tmp_path / "rgb.bundle")  # fmt: skip
    rng = np.random.default_rng(5)
    rgb = rng.integers(40, 200, (3, 90, 110)).astype(np.uint8)
    alpha = np.full((90, 110), 255, np.uint8)
    alpha[:, :30] = 0
    rgb[:, alpha == 0] = 255  # garbage under the transparent part
    transform = rasterio.Affine(2, 0, 4e5, 0, -2, 5e6)
    common = {"driver": "GTiff", "width": 110, "height": 90, "crs": "EPSG:32633",
              "transform": transform}  # fmt: skip
    with rasterio.open(tmp_path / "rgba.tif", "w", count=4, dtype="uint8", photometric="RGB",
                       alpha="YES", **common) as dst:  # fmt: skip
        dst.write(np.concatenate([rgb, alpha[None]]))
    ref = np.where(alpha > 0, rgb.astype(np.float32), np.nan)
    with rasterio.open(tmp_path / "nan.tif", "w", count=3, dtype="float32", nodata=float("nan"),
                       **common) as dst:  # fmt: skip
        dst.write(ref)
    a = _predict(bundle, tmp_path / "rgba.tif", tmp_path / "a.tif")
    b = _predict(bundle, tmp_path / "nan.tif", tmp_path / "b.tif")
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a == 255, alpha == 0)


def test_predict_array_ignores_values_under_the_validity_mask(five_band: Path) -> None:
    """In memory: values under ``valid=False`` (here -99999) give the map of NaN there."""
    img, inside = _scene(2)
    pred = Predictor.from_bundle(ModelBundle.load(five_band))
    valid = torch.from_numpy(inside)
    a = predict_array(pred, torch.from_numpy(np.where(inside, img, NODATA)), valid=valid,
                      window=64, overlap=16).classes  # fmt: skip
    b = predict_array(pred, torch.from_numpy(np.where(inside, img, np.nan)),
                      window=64, overlap=16).classes  # fmt: skip
    assert torch.equal(a, b)


def _region(root: Path, write_tif, mask: np.ndarray, nodata: float | None, classes: str) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.yaml").write_text(classes)
    img, _ = _scene(3)
    write_tif(root / "images" / "t.tif", img[:, : mask.shape[0], : mask.shape[1]])
    write_tif(root / "masks" / "t.tif", mask, nodata=nodata)
    return root


SEVEN = "classes:\n" + "".join(f"  - {{name: c{v}, value: {v}}}\n" for v in range(1, 8))


def test_mask_nodata_is_the_ignore_value(tmp_path: Path, write_tif) -> None:
    """A float32 mask with values 1..7 and nodata -99999 (before: 'mask holds values in no
    class and no ignore entry: -99999')."""
    mask = np.tile(np.arange(1, 8, dtype=np.float32), (40, 8))[:, :50]
    mask[:10] = NODATA
    root = _region(tmp_path / "r", write_tif, mask, NODATA, SEVEN)
    sample = read_region_folder(root)[0]
    m = sample["mask"].numpy()
    assert (m[:10] == 255).all()
    np.testing.assert_array_equal(m[10:], mask[10:].astype(np.int64) - 1)


def test_mask_nodata_that_the_class_file_names_is_a_class(tmp_path: Path, write_tif) -> None:
    """uint8 mask with nodata 0 where the class file makes 0 a class: the class file says
    otherwise, so 0 stays that class."""
    mask = np.zeros((30, 30), np.uint8)
    mask[:, 15:] = 1
    path = write_tif(tmp_path / "m.tif", mask, nodata=0)
    scheme = ClassScheme(names=("water", "land"), values=(0, 1))
    np.testing.assert_array_equal(read_mask(path, scheme), mask)
    other = ClassScheme(names=("land",), values=(1,))
    np.testing.assert_array_equal(read_mask(path, other), np.where(mask == 1, 0, 255))


def test_adapt_on_finite_nodata_support_equals_nan_support(
    tmp_path: Path, write_tif, five_band: Path
) -> None:
    """`landcover adapt` on support tiles with a -99999 frame: the adapted model of the
    same tiles with NaN there (nodata pixels are neither labels nor network input)."""
    from landcover.inference.adapt import adapt_folder, read_support

    bundle = ModelBundle.load(five_band)
    classes = "classes:\n" + "".join(f"  - {{name: class{i}, value: {i + 1}}}\n" for i in range(4))
    results = {}
    for name, fill in (("finite", NODATA), ("nan", np.nan)):
        root = tmp_path / name
        (root / "images").mkdir(parents=True)
        (root / "masks").mkdir()
        (root / "classes.yaml").write_text(classes)
        for t in range(2):
            img, inside = _scene(10 + t)
            mask = (np.digitize(img[0], [0.2, 0.3, 0.4]) + 1).astype(np.float32)
            write_tif(root / "images" / f"t{t}.tif", np.where(inside, img, fill), nodata=fill)
            write_tif(root / "masks" / f"t{t}.tif", np.where(inside, mask, fill), nodata=fill)
        images, masks, _ = read_support(bundle, root)
        assert all(bool(m[~torch.from_numpy(inside)].eq(255).all()) for m in masks[-1:])
        assert bool(images[-1][:, ~torch.from_numpy(inside)].isnan().all())
        results[name] = adapt_folder(bundle, root, steps=2, guard=False)
    a, b = results["finite"], results["nan"]
    assert a.miou_before == b.miou_before and a.miou_after == b.miou_after
    sa, sb = a.bundle.adapted_state("cpu"), b.bundle.adapted_state("cpu")
    for key, value in sa.params.items():
        torch.testing.assert_close(value, sb.params[key], rtol=0, atol=0)
