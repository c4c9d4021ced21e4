import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from landcover.tasks.omniglot import (
    DEFAULT_TEST_ALPHABETS,
    EpisodeSampler,
    load_omniglot,
    preprocess,
    with_rotations,
)


def _png(path: Path, seed: int) -> None:
    """A 105x105 1-bit drawing like Omniglot's: white background, black strokes."""
    rng = np.random.default_rng(seed)
    arr = np.ones((105, 105), dtype=bool)
    r, c = rng.integers(10, 60, size=2)
    arr[r : r + 40, c : c + 8] = False  # a vertical stroke
    Image.fromarray(arr).save(path)


def _tree(root: Path, top: str, spec: dict[str, int], drawers=(1, 2, 3, 4)) -> Path:
    for alphabet, n_chars in spec.items():
        for c in range(1, n_chars + 1):
            d = root / top / alphabet / f"character{c:02d}"
            d.mkdir(parents=True)
            for k in drawers:
                _png(d / f"{c:04d}_{k:02d}.png", hash((alphabet, c, k)) % 2**32)
    return root / top


def _zip(folder: Path, out: Path) -> Path:
    with zipfile.ZipFile(out, "w") as zf:
        for p in sorted(folder.parent.rglob("*")):
            if folder.name in p.parts:
                zf.write(p, p.relative_to(folder.parent).as_posix())
    return out


def test_preprocess_is_28x28_with_ink_one(tmp_path):
    _png(tmp_path / "a.png", 0)
    x = preprocess(tmp_path / "a.png")
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32
    assert x.max() > 0.9 and x.min() == 0.0  # strokes ~1, background 0
    assert x.mean() < 0.2  # mostly background
    with pytest.raises(ValueError, match="cannot decode"):
        preprocess(b"not a png")


def test_reads_zip_and_folder_and_deduplicates_shared_alphabets(tmp_path):
    a = _tree(tmp_path / "a", "images_background_small1", {"Greek": 2, "Balinese": 3})
    b = _tree(
        tmp_path / "b", "images_background_small2", {"Greek": 2, "Tagalog": 1}, drawers=(3, 4, 5)
    )
    za = _zip(a, tmp_path / "small1.zip")
    data = load_omniglot([za, b])
    assert data.alphabets == ["Balinese", "Greek", "Tagalog"]
    assert data.num_classes == 6  # Greek's 2 characters counted once
    counts = torch.bincount(data.labels).tolist()
    greek = [i for i, (al, _, _) in enumerate(data.classes) if al == "Greek"]
    assert [counts[i] for i in greek] == [5, 5]  # drawers 1-4 and 3-5 merged by file name
    folder_only = load_omniglot([a])
    zip_only = load_omniglot([za])
    torch.testing.assert_close(folder_only.images, zip_only.images)


def test_split_and_rotations_for_training_only(tmp_path):
    root = _tree(
        tmp_path, "images_background", {"Greek": 2, "Latin": 2, "Tagalog": 1, "Early_Aramaic": 1}
    )
    data = load_omniglot([root])
    test = data.select_alphabets(DEFAULT_TEST_ALPHABETS)
    train = with_rotations(data.drop_alphabets(DEFAULT_TEST_ALPHABETS))
    assert test.num_classes == 2 and {r for _, _, r in test.classes} == {0}
    assert train.num_classes == 16 and train.alphabets == ["Greek", "Latin"]
    i0 = (train.labels == 0).nonzero()[0, 0]
    i90 = (train.labels == 4).nonzero()[0, 0]
    assert train.classes[4][2] == 90
    torch.testing.assert_close(train.images[i90], torch.rot90(train.images[i0], 1, (-2, -1)))
    with pytest.raises(KeyError, match="valid"):
        data.select_alphabets(["Klingon"])
    with pytest.raises(ValueError, match="multiples of 90"):
        with_rotations(data, (45,))


def test_bad_sources_are_clear_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no Omniglot images"):
        load_omniglot([tmp_path / "empty"])
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(ValueError, match="neither a folder nor a zip"):
        load_omniglot([tmp_path / "x.txt"])
    with pytest.raises(FileNotFoundError):
        load_omniglot([tmp_path / "missing.zip"])


def test_episode_sampler_is_seeded_disjoint_and_shuffled():
    labels = torch.arange(10).repeat_interleave(6)
    e1 = EpisodeSampler(labels, seed=3).sample(5, 2, 3)
    e2 = EpisodeSampler(labels, seed=3).sample(5, 2, 3)
    assert torch.equal(e1.support_idx, e2.support_idx)
    assert set(e1.support_idx.tolist()).isdisjoint(e1.query_idx.tolist())
    assert sorted(e1.support_y.tolist()) == sorted(list(range(5)) * 2)
    for idx, y in zip(
        e1.support_idx.tolist() + e1.query_idx.tolist(), e1.support_y.tolist() + e1.query_y.tolist()
    ):
        assert labels[idx] == e1.classes[y]
    assert e1.support_y.tolist() != sorted(e1.support_y.tolist())  # shuffled (seeded)
    with pytest.raises(ValueError, match="needs 20 classes"):
        EpisodeSampler(labels).sample(20, 1, 1)


def test_real_small_background_sets(shared_data):
    root = shared_data / "omniglot"
    data = load_omniglot(
        [root / "images_background_small1.zip", root / "images_background_small2.zip"]
    )
    assert data.num_classes == 242 and len(data.alphabets) == 8
    assert data.images.shape == (4840, 1, 28, 28)
    assert data.select_alphabets(DEFAULT_TEST_ALPHABETS).num_classes == 39
