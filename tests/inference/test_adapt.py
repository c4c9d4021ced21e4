from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from landcover.geo.errors import GeoDataError
from landcover.inference.adapt import (
    adapt_bundle,
    adapt_folder,
    miou,
    read_support,
    support_crops,
)
from landcover.inference.bundle import ModelBundle
from landcover.inference.errors import BandMismatchError, BundleError
from landcover.inference.testing import tiny_bundle


def test_adaptation_fits_the_support_folder(support_folder: Path, tmp_path: Path) -> None:
    bundle = tiny_bundle(3, 3, mean=100.0, std=50.0)
    result = adapt_folder(bundle, support_folder, steps=10)
    assert result.tiles == 3 and result.crops == 12  # 40 px tiles -> 2 x 2 crops of 32 px
    assert result.miou_after > result.miou_before + 0.2
    adapted = result.bundle
    assert adapted.kind == "adapted" and bundle.kind == "meta"
    assert adapted.info["adaptation"]["miou_after"] == result.miou_after
    assert adapted.info["support"]["tiles"] == ["tile0", "tile1", "tile2"]
    loaded = ModelBundle.load(adapted.save(tmp_path / "a.bundle"))
    assert loaded.adapted_state().step == 10
    # re-adapting an adapted bundle starts again from the meta-learned weights
    again = adapt_folder(loaded, support_folder, steps=10)
    assert again.miou_after == pytest.approx(result.miou_after, abs=1e-6)


def test_default_steps_come_from_the_bundle() -> None:
    bundle = tiny_bundle(3, 2)
    bundle.inner_steps = 4
    x, y = torch.rand(2, 3, 32, 32), torch.randint(0, 2, (2, 32, 32))
    assert adapt_bundle(bundle, x, y, guard=False).bundle.adapted_state().step == 4
    assert adapt_bundle(bundle, x, y, steps=1, guard=False).bundle.adapted_state().step == 1
    assert adapt_bundle(bundle, x, y).report()["steps_tried"] == 4  # the guard's ceiling


def test_support_crops_cut_and_pad() -> None:
    imgs = [torch.ones(2, 70, 40), torch.ones(2, 10, 12)]
    masks = [torch.zeros(70, 40, dtype=torch.long), torch.ones(10, 12, dtype=torch.long)]
    masks[0][:32, :32] = 255  # the first crop is unlabeled and dropped
    x, y = support_crops(imgs, masks, 32, 255)
    # tile 0: rows 0, 32, 38 x cols 0, 8 = 6 crops, minus the unlabeled one; tile 1: padded
    assert x.shape == (6, 2, 32, 32) and y.shape == (6, 32, 32)
    assert bool(torch.isnan(x[-1, :, 10:, :]).all()) and bool((y[-1, 10:, :] == 255).all())
    assert bool((y[-1, :10, :12] == 1).all())


def test_folder_classes_are_remapped_by_name(tmp_path: Path, write_support_folder) -> None:
    folder = write_support_folder(tmp_path / "s", n=1, classes=("class2", "class0"))
    _, masks, keys = read_support(tiny_bundle(3, 3), folder)
    raw = np.asarray(masks[0])
    assert keys == ["tile0"] and set(np.unique(raw)) <= {0, 2}
    assert (raw == 2).any()  # folder class #0 ("class2", value 1) -> bundle class 2


def test_unknown_folder_class_is_refused(tmp_path: Path, write_support_folder) -> None:
    folder = write_support_folder(tmp_path / "s", n=1, classes=("class0", "wetland"))
    with pytest.raises(BundleError, match=r"\['wetland'\] are not classes of the model"):
        adapt_folder(tiny_bundle(3, 3), folder)


def test_missing_mask_names_the_file(support_folder: Path) -> None:
    (support_folder / "masks" / "tile1.tif").unlink()
    with pytest.raises(GeoDataError, match="tile1"):
        adapt_folder(tiny_bundle(3, 3), support_folder)


@pytest.mark.parametrize(
    ("images", "masks", "error", "match"),
    [
        ([], [], BundleError, "no support tiles"),
        ([torch.rand(3, 32, 32)], [torch.full((32, 32), 255)], BundleError, "no labeled pixel"),
        ([torch.rand(4, 32, 32)], [torch.zeros(32, 32, dtype=torch.long)], BandMismatchError,
         "support tile 0 has 4 band"),
        ([torch.rand(3, 32, 32)], [torch.full((32, 32), 7)], ValueError, r"class indices \[7\]"),
        ([torch.rand(3, 32, 32)], [torch.zeros(30, 32, dtype=torch.long)], BundleError,
         "do not match"),
        ([torch.rand(3, 32, 32)] * 2, [torch.zeros(32, 32, dtype=torch.long)], BundleError,
         "give pairs"),
    ],
)  # fmt: skip
def test_bad_support_is_a_clear_error(images, masks, error, match) -> None:
    with pytest.raises(error, match=match):
        adapt_bundle(tiny_bundle(3, 3), images, masks)


def test_negative_steps_are_refused() -> None:
    x, y = torch.rand(1, 3, 32, 32), torch.zeros(1, 32, 32, dtype=torch.long)
    with pytest.raises(BundleError, match="steps must be >= 0"):
        adapt_bundle(tiny_bundle(3, 3), x, y, steps=-1)


def test_miou_matches_the_evaluation_metric() -> None:
    from landcover.evaluation.metrics import segmentation_scores

    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        pred = torch.randint(0, 4, (2, 20, 20), generator=g)
        pred[pred == 3] = 2  # a class absent from the prediction
        target = torch.randint(0, 4, (2, 20, 20), generator=g)
        target[0, :4] = 255
        want = segmentation_scores(pred, target, 4, 255)["miou"]
        assert miou(pred, target, 4, 255) == pytest.approx(want, abs=1e-6)
    assert np.isnan(miou(pred, torch.full_like(target, 255), 4))


def test_cli_adapt_bad_input_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from landcover.cli import main as cli

    meta = tiny_bundle(3, 3).save(tmp_path / "m.bundle")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli(["adapt", str(meta), "--support", str(empty), "-o", str(tmp_path / "a")]) == 2
    assert "images/" in capsys.readouterr().err
    not_bundle = tmp_path / "x.bundle"
    not_bundle.write_bytes(b"\x80\x04junk")
    assert cli(["adapt", str(not_bundle), "--support", str(empty), "-o", str(tmp_path / "a")]) == 2
    assert "never unpickles" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
