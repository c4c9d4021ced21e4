"""One entry point to every dataset format: ``load_regions(root, kind=...)``.

Kinds: ``"folder"`` (users' region folders, also what ``landcover data synth`` writes),
``"sen12ms"``, ``"deepglobe"``, ``"synthetic"`` (generated in memory, ``root`` ignored) and
``"auto"``, which detects the format from the folder's content: ``ROIs*`` season folders mean
SEN12MS; ``*_sat.*`` files (directly, in ``train/``) or torchgeo's ``data/training_data``
mean DeepGlobe (:func:`landcover.geo.deepglobe.looks_like_deepglobe`; a folder that looks
like DeepGlobe but matches neither of its layouts gets DeepGlobe's error, not the folder
reader's); anything else is the folder format. Options are passed to the reader (e.g.
``split="train"``, ``sources="both"``, ``classes="my_classes.yaml"`` for folders).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from landcover.geo.errors import GeoDataError
from landcover.geo.region import Region

KINDS = ("auto", "folder", "sen12ms", "deepglobe", "synthetic")


def detect_kind(root: str | Path) -> str:
    """The format of a dataset folder: ``"sen12ms"``, ``"deepglobe"`` or ``"folder"``."""
    root = Path(root)
    if not root.is_dir():
        raise GeoDataError("dataset folder not found", root)
    if any(p.is_dir() and p.name.startswith("ROIs") for p in root.iterdir()):
        return "sen12ms"
    from landcover.geo.deepglobe import looks_like_deepglobe

    if looks_like_deepglobe(root):
        return "deepglobe"
    return "folder"


def load_regions(root: str | Path | None, kind: str = "auto", **options: Any) -> list[Region]:
    """Read the regions of a dataset.

    Args:
        root: Dataset folder (ignored for ``"synthetic"``).
        kind: One of :data:`KINDS`.
        **options: Reader options: :func:`~landcover.geo.folder.read_regions` (``scheme``,
            ``validate``, ``cache``), :class:`~landcover.geo.sen12ms.SEN12MS`,
            :class:`~landcover.geo.deepglobe.DeepGlobe`, or the fields of
            :class:`~landcover.geo.synthetic.SynthConfig`.

    Raises:
        KeyError: Unknown ``kind``.
    """
    if kind not in KINDS:
        raise KeyError(f"unknown dataset kind {kind!r}; choose one of {', '.join(KINDS)}")
    if kind == "synthetic":
        from landcover.geo.synthetic import SynthConfig, synthetic_regions

        return synthetic_regions(SynthConfig(**options))
    if root is None:
        raise ValueError(f"dataset kind {kind!r} needs a root folder")
    if kind == "auto":
        kind = detect_kind(root)
    if kind == "sen12ms":
        from landcover.geo.sen12ms import SEN12MS

        return SEN12MS(root, **options).regions
    if kind == "deepglobe":
        from landcover.geo.deepglobe import DeepGlobe

        return DeepGlobe(root, **options).regions
    from landcover.geo.folder import read_regions

    return read_regions(root, **options)


def region_splits(
    root: str | Path, kind: str = "auto", **options: Any
) -> dict[str, list[str]] | None:
    """Region names of the dataset's own train / val / test splits, if it defines them.

    SEN12MS holds out :data:`~landcover.geo.sen12ms.DEFAULT_TEST_SCENES` (or the
    ``test_scenes`` / ``val_scenes`` lists given); DeepGlobe draws or takes ``test_regions`` /
    ``val_regions``. Folder and synthetic datasets have no split of their own (``None``).
    """
    kind = detect_kind(root) if kind == "auto" else kind
    options = {k: v for k, v in options.items() if k != "split"}
    if kind == "sen12ms":
        from landcover.geo.sen12ms import SEN12MS

        splits = SEN12MS(root, **options).splits
    elif kind == "deepglobe":
        from landcover.geo.deepglobe import DeepGlobe

        splits = DeepGlobe(root, **options).splits
    else:
        return None
    return {k: list(v) for k, v in splits.items() if k != "all"}
