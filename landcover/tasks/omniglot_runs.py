"""The 20 one-shot classification runs of Lake, Salakhutdinov & Tenenbaum (Science, 2015).

``all_runs.zip`` (or its extracted folder) holds ``runNN/`` folders, each with
``training/class01..20.png`` (one image per class), ``test/item01..20.png`` and
``class_labels.txt`` whose lines read ``runNN/test/itemKK.png runNN/training/classJJ.png``
(a test item and the training image of its class). Each run is a 20-way 1-shot task
within one alphabet; the published figure is the error rate over the 20 runs
(people 4.5%, Bayesian Program Learning 3.3%).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import torch
from torch import Tensor

from landcover.tasks.omniglot import IMAGE_SIZE, preprocess
from landcover.tasks.task import Task


@dataclass
class OneShotRun:
    """One run: 20 training images (one per class) and 20 test items with their class.

    Attributes:
        name: ``runNN``.
        train_images: ``(C, 1, H, W)``, class ``j`` is row ``j``.
        test_images: ``(T, 1, H, W)``.
        test_labels: ``(T,)`` class index of each test item.
    """

    name: str
    train_images: Tensor
    test_images: Tensor
    test_labels: Tensor

    def task(self) -> Task:
        """The run as a task: support = training images, query = test items."""
        support_y = torch.arange(len(self.train_images))
        return Task(
            self.train_images, support_y, self.test_images, self.test_labels, {"run": self.name}
        )


class _Reader:
    """Uniform file access to a zip or a folder, by POSIX path."""

    def __init__(self, source: Path) -> None:
        self.source = source
        if source.is_dir():
            self.zip = None
            self.names = [p.relative_to(source).as_posix() for p in source.rglob("*")]
        elif zipfile.is_zipfile(source):
            self.zip = zipfile.ZipFile(source)
            self.names = self.zip.namelist()
        elif source.exists():
            raise ValueError(
                f"{source} is neither a folder nor a zip; give all_runs.zip or its extracted folder"
            )
        else:
            raise FileNotFoundError(f"Lake runs source {source} does not exist")

    def read(self, name: str) -> bytes:
        if self.zip is None:
            return (self.source / name).read_bytes()
        return self.zip.read(name)


def load_runs(source: str | Path, size: int = IMAGE_SIZE) -> list[OneShotRun]:
    """Read the one-shot runs from ``all_runs.zip`` or its folder, sorted by run name.

    Args:
        source: The archive or the extracted folder.
        size: Side length after resizing (same preprocessing as the Omniglot reader).

    Returns:
        The runs (20 for the published archive).

    Raises:
        ValueError: If no ``class_labels.txt`` is found, or a line or path is malformed.
    """
    reader = _Reader(Path(source))
    label_files = sorted(n for n in reader.names if PurePosixPath(n).name == "class_labels.txt")
    if not label_files:
        raise ValueError(
            f"no runNN/class_labels.txt in {source}; expected Lake et al.'s all_runs.zip layout"
        )
    runs = []
    for lf in label_files:
        run_dir = PurePosixPath(lf).parent
        base = run_dir.parent  # paths in class_labels.txt start with runNN/
        text = reader.read(lf).decode("utf-8")
        pairs = []
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            fields = line.split()
            if len(fields) != 2:
                raise ValueError(
                    f"{lf}:{lineno}: expected 'runNN/test/itemKK.png "
                    f"runNN/training/classJJ.png', got {line!r}"
                )
            pairs.append((fields[0], fields[1]))
        train_names = sorted({t for _, t in pairs})
        all_train = sorted(
            n
            for n in reader.names
            if PurePosixPath(n).parent == run_dir / "training" and n.endswith(".png")
        )
        train_names = sorted(
            set(train_names) | {str(PurePosixPath(n).relative_to(base)) for n in all_train}
        )
        index = {name: j for j, name in enumerate(train_names)}

        def load(rel: str, lf: str = lf, base: PurePosixPath = base) -> Tensor:
            name = str(base / rel) if str(base) != "." else rel
            try:
                return preprocess(reader.read(name), size)
            except (KeyError, FileNotFoundError) as exc:
                raise ValueError(f"{lf} names {rel}, which is not in {source}") from exc

        train = torch.stack([load(n) for n in train_names])
        test = torch.stack([load(q) for q, _ in pairs])
        labels = torch.tensor([index[t] for _, t in pairs], dtype=torch.long)
        runs.append(OneShotRun(run_dir.name, train, test, labels))
    return runs
