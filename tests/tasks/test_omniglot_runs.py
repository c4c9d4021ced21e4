import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from landcover.tasks.omniglot_runs import load_runs


def _png(path: Path, k: int) -> None:
    arr = np.ones((105, 105), dtype=bool)
    arr[5 * k : 5 * k + 10, :] = False  # class k: a horizontal band at row 5k
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _runs(root: Path, n_runs: int = 2, n_classes: int = 4) -> Path:
    for r in range(1, n_runs + 1):
        run = f"run{r:02d}"
        lines = []
        perm = np.random.default_rng(r).permutation(n_classes)
        for j in range(1, n_classes + 1):
            _png(root / run / "training" / f"class{j:02d}.png", j)
        for i in range(1, n_classes + 1):
            j = int(perm[i - 1]) + 1
            _png(root / run / "test" / f"item{i:02d}.png", j)
            lines.append(f"{run}/test/item{i:02d}.png {run}/training/class{j:02d}.png")
        (root / run / "class_labels.txt").write_text("\n".join(lines) + "\n")
    return root


def test_folder_and_zip_give_the_same_runs(tmp_path):
    folder = _runs(tmp_path / "all_runs")
    with zipfile.ZipFile(tmp_path / "all_runs.zip", "w") as zf:
        for p in sorted(folder.rglob("*")):
            zf.write(p, p.relative_to(folder).as_posix())
    for runs in (load_runs(folder), load_runs(tmp_path / "all_runs.zip")):
        assert [r.name for r in runs] == ["run01", "run02"]
        run = runs[0]
        assert run.train_images.shape == (4, 1, 28, 28)
        perm = np.random.default_rng(1).permutation(4)
        assert run.test_labels.tolist() == perm.tolist()
        # each test item is the same drawing as its class's training image here
        torch.testing.assert_close(run.test_images, run.train_images[run.test_labels])
        task = run.task()
        assert task.support_y.tolist() == [0, 1, 2, 3]


def test_malformed_runs_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match=r"class_labels\.txt"):
        load_runs(tmp_path)
    folder = _runs(tmp_path / "r", n_runs=1)
    (folder / "run01" / "class_labels.txt").write_text("only-one-field\n")
    with pytest.raises(ValueError, match="expected"):
        load_runs(folder)
    (folder / "run01" / "class_labels.txt").write_text(
        "run01/test/item09.png run01/training/class01.png\n"
    )
    with pytest.raises(ValueError, match="item09"):
        load_runs(folder)
