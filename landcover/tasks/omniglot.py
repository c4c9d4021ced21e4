"""Omniglot (Lake et al. 2015): reader, preprocessing, alphabet split and episode sampler.

The reader accepts the archives of the Omniglot repository (``images_background.zip``,
``images_evaluation.zip``, ``images_background_small1.zip``, ...) or their extracted
folders. The standard layout is ``<top>/<Alphabet>/<character>/<image>_<drawer>.png``.
Characters are keyed by ``(alphabet, character)``, so the small subsets, which share some
alphabets (Greek, Latin), are de-duplicated: images of one key are merged by file name.

Preprocessing follows the few-shot literature (Vinyals et al. 2016; Finn et al. 2017):
105x105 binary drawings resized to 28x28 (antialiased) and inverted so ink = 1. Rotations
by 90/180/270 degrees make new classes, for meta-training only
(:func:`with_rotations`); held-out alphabets are never rotated.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from landcover.tasks.task import Task

#: Fixed held-out alphabets of ``landcover bench omniglot``: the two smallest alphabets of
#: the two small background subsets (22 + 17 = 39 characters, enough for 20-way tasks),
#: so that the most characters remain for meta-training.
DEFAULT_TEST_ALPHABETS: tuple[str, ...] = ("Early_Aramaic", "Tagalog")

IMAGE_SIZE = 28


def preprocess(png: bytes | Path, size: int = IMAGE_SIZE) -> Tensor:
    """Decode one Omniglot PNG into a ``(1, size, size)`` float tensor with ink = 1.

    Args:
        png: The encoded image or a path to it.
        size: Output side length in pixels.

    Returns:
        Float tensor in [0, 1], background 0, strokes close to 1.

    Raises:
        ValueError: If the bytes are not a readable image.
    """
    try:
        source = io.BytesIO(png) if isinstance(png, bytes) else png
        with Image.open(source) as im:
            gray = im.convert("L").resize((size, size), Image.Resampling.LANCZOS)
    except Exception as exc:  # PIL raises several types for corrupt data
        raise ValueError(
            f"cannot decode Omniglot image {png if isinstance(png, Path) else ''}"
            f" ({exc}); expected a PNG drawing"
        ) from exc
    arr = np.asarray(gray, dtype=np.float32) / 255.0
    return torch.from_numpy(np.clip(1.0 - arr, 0.0, 1.0)).unsqueeze(0)


@dataclass
class OmniglotSet:
    """Characters with their images, one class per ``(alphabet, character, rotation)``.

    Attributes:
        images: ``(N, 1, H, W)`` float tensor, ink = 1.
        labels: ``(N,)`` class index of each image.
        classes: One ``(alphabet, character, rotation_degrees)`` per class index.
    """

    images: Tensor
    labels: Tensor
    classes: list[tuple[str, str, int]] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    @property
    def alphabets(self) -> list[str]:
        """Sorted alphabet names."""
        return sorted({a for a, _, _ in self.classes})

    def indices_by_class(self) -> list[Tensor]:
        """Image indices of each class, in class order."""
        order = torch.argsort(self.labels, stable=True)
        counts = torch.bincount(self.labels, minlength=self.num_classes).tolist()
        return list(torch.split(order, counts))

    def select_alphabets(self, names: Sequence[str]) -> OmniglotSet:
        """Keep only the classes of the given alphabets (re-indexed from 0).

        Raises:
            KeyError: If a name is not an alphabet of this set.
        """
        unknown = sorted(set(names) - set(self.alphabets))
        if unknown:
            raise KeyError(f"unknown alphabet(s) {unknown}; valid: {self.alphabets}")
        keep = [i for i, (a, _, _) in enumerate(self.classes) if a in set(names)]
        return self._subset(keep)

    def drop_alphabets(self, names: Sequence[str]) -> OmniglotSet:
        """Remove the classes of the given alphabets (see :meth:`select_alphabets`)."""
        unknown = sorted(set(names) - set(self.alphabets))
        if unknown:
            raise KeyError(f"unknown alphabet(s) {unknown}; valid: {self.alphabets}")
        return self.select_alphabets([a for a in self.alphabets if a not in set(names)])

    def _subset(self, keep: list[int]) -> OmniglotSet:
        remap = torch.full((self.num_classes,), -1, dtype=torch.long)
        remap[torch.tensor(keep, dtype=torch.long)] = torch.arange(len(keep))
        mask = remap[self.labels] >= 0
        return OmniglotSet(
            self.images[mask], remap[self.labels[mask]], [self.classes[i] for i in keep]
        )


def _iter_pngs(source: Path) -> Iterator[tuple[tuple[str, ...], bytes]]:
    """Yield ``(path parts, png bytes)`` of every PNG in a zip or a folder."""
    if source.is_dir():
        for p in sorted(source.rglob("*.png")):
            yield p.relative_to(source).parts, p.read_bytes()
    elif zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as zf:
            for name in sorted(zf.namelist()):
                if name.lower().endswith(".png") and "__MACOSX" not in name:
                    yield tuple(Path(name).parts), zf.read(name)
    elif source.exists():
        raise ValueError(
            f"{source} is neither a folder nor a zip archive; give an Omniglot "
            "zip (e.g. images_background.zip) or its extracted folder"
        )
    else:
        raise FileNotFoundError(f"Omniglot source {source} does not exist")


def load_omniglot(sources: Sequence[str | Path], size: int = IMAGE_SIZE) -> OmniglotSet:
    """Read Omniglot from zips and/or folders, merging duplicates by alphabet and character.

    Args:
        sources: Archives or extracted folders in the standard layout.
        size: Side length after resizing.

    Returns:
        The characters as classes (rotation 0), sorted by alphabet then character.

    Raises:
        ValueError: If no image in the standard layout was found.
    """
    found: dict[tuple[str, str], dict[str, bytes]] = {}
    for src in sources:
        for parts, data in _iter_pngs(Path(src)):
            if len(parts) < 3:
                continue  # need <Alphabet>/<character>/<image>.png at least
            alphabet, character, fname = parts[-3], parts[-2], parts[-1]
            found.setdefault((alphabet, character), {}).setdefault(fname, data)
    if not found:
        raise ValueError(
            f"no Omniglot images found in {list(map(str, sources))}; expected "
            "<top>/<Alphabet>/<character>/<image>_<drawer>.png"
        )
    images: list[Tensor] = []
    labels: list[int] = []
    classes: list[tuple[str, str, int]] = []
    for idx, key in enumerate(sorted(found)):
        classes.append((key[0], key[1], 0))
        for fname in sorted(found[key]):
            images.append(preprocess(found[key][fname], size))
            labels.append(idx)
    return OmniglotSet(torch.stack(images), torch.tensor(labels, dtype=torch.long), classes)


def with_rotations(data: OmniglotSet, angles: Sequence[int] = (0, 90, 180, 270)) -> OmniglotSet:
    """Add rotated copies of every class as new classes (meta-training augmentation).

    Args:
        data: Unrotated classes.
        angles: Rotations in degrees, multiples of 90.

    Raises:
        ValueError: If an angle is not a multiple of 90 or the set is already rotated.
    """
    if any(a % 90 for a in angles):
        raise ValueError(f"rotation angles must be multiples of 90 degrees; got {list(angles)}")
    if any(r != 0 for _, _, r in data.classes):
        raise ValueError("with_rotations expects an unrotated set")
    imgs, labels, classes = [], [], []
    for j, angle in enumerate(angles):
        imgs.append(torch.rot90(data.images, k=angle // 90, dims=(-2, -1)))
        labels.append(data.labels + j * data.num_classes)
        classes += [(a, c, angle) for a, c, _ in data.classes]
    return OmniglotSet(torch.cat(imgs), torch.cat(labels), classes)


@dataclass
class Episode:
    """Indices of one N-way K-shot episode into an image table (or an embedding table)."""

    support_idx: Tensor
    support_y: Tensor
    query_idx: Tensor
    query_y: Tensor
    classes: list[int]

    def task(self, table: Tensor) -> Task:
        """Gather the episode from ``table`` (images or precomputed embeddings)."""
        return Task(
            table[self.support_idx],
            self.support_y,
            table[self.query_idx],
            self.query_y,
            {"classes": self.classes},
        )


class EpisodeSampler:
    """Seeded N-way K-shot episodes over an :class:`OmniglotSet` (any labelled set).

    Labels of an episode are ``0..N-1`` in a random class order; support and query are
    disjoint and shuffled (sequence learners must not see the class order).

    Args:
        labels: ``(N,)`` class index of each item.
        seed: Seed of the episode stream.
    """

    def __init__(self, labels: Tensor, seed: int = 0) -> None:
        num = int(labels.max()) + 1 if labels.numel() else 0
        order = torch.argsort(labels, stable=True)
        counts = torch.bincount(labels, minlength=num).tolist()
        self.by_class = list(torch.split(order, counts))
        self.generator = torch.Generator().manual_seed(seed)

    def sample(self, n_way: int, k_shot: int, n_query: int) -> Episode:
        """Draw one episode.

        Raises:
            ValueError: If there are too few classes or too few images per class.
        """
        eligible = [c for c, idx in enumerate(self.by_class) if len(idx) >= k_shot + n_query]
        if n_way < 1 or k_shot < 1 or n_query < 0:
            raise ValueError(
                f"need n_way >= 1, k_shot >= 1, n_query >= 0; got {n_way}, {k_shot}, {n_query}"
            )
        if len(eligible) < n_way:
            raise ValueError(
                f"{n_way}-way {k_shot}-shot with {n_query} queries needs {n_way} "
                f"classes with >= {k_shot + n_query} images; only {len(eligible)}"
            )
        g = self.generator
        pick = torch.randperm(len(eligible), generator=g)[:n_way].tolist()
        classes = [eligible[i] for i in pick]
        s_idx, s_y, q_idx, q_y = [], [], [], []
        for label, c in enumerate(classes):
            items = self.by_class[c][torch.randperm(len(self.by_class[c]), generator=g)]
            s_idx.append(items[:k_shot])
            q_idx.append(items[k_shot : k_shot + n_query])
            s_y += [label] * k_shot
            q_y += [label] * n_query
        sp = torch.randperm(n_way * k_shot, generator=g)
        qp = torch.randperm(n_way * n_query, generator=g)
        return Episode(
            torch.cat(s_idx)[sp],
            torch.tensor(s_y, dtype=torch.long)[sp],
            torch.cat(q_idx)[qp] if q_idx else torch.empty(0, dtype=torch.long),
            torch.tensor(q_y, dtype=torch.long)[qp],
            classes,
        )
