"""Errors of the geospatial data layer: each names the file and says what to do."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path


class GeoDataError(ValueError):
    """A dataset, raster or class file on disk is not what the reader expects.

    Attributes:
        path: The offending file or folder, when there is one.
    """

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = None if path is None else Path(path)
        prefix = f"{self.path}: " if self.path is not None else ""
        super().__init__(prefix + message)


class MaskValueError(GeoDataError):
    """A mask holds values or colours that its class scheme does not define.

    The message lists the offending values (largest pixel counts first) and their share of
    the mask, says plainly when not one pixel has a class's value or colour (the class
    file's codes do not match the masks, as in a dataset shipped with the wrong colours),
    names the class file and says what to do. :func:`mismatch_summary` sums several of them.

    Attributes:
        counts: Offending raw value (an int or an RGB tuple) -> number of pixels.
        pixels: Pixels of the mask (``None`` when unknown).
        matched: Pixels that have a class's value or colour (``None`` when unknown).
        class_file: The class file the scheme came from, if any.
        kind: ``"values"`` or ``"colours"``.
        ignore: The scheme's ignore values or colours.
        valid: The values the scheme accepts, as text.
        short: The message without the class file's values and the advice (for a table
            whose rows share them).
    """

    def __init__(
        self,
        path: str | Path | None,
        counts: Mapping[int | tuple[int, ...], int],
        valid: str,
        *,
        pixels: int | None = None,
        matched: int | None = None,
        class_file: str | Path | None = None,
        kind: str = "values",
        ignore: Sequence[int | tuple[int, ...]] = (),
    ) -> None:
        self.counts = dict(counts)
        self.pixels, self.matched, self.kind, self.valid = pixels, matched, kind, valid
        self.ignore = tuple(ignore)
        self.class_file = None if class_file is None else Path(class_file)
        share = ""
        if pixels:
            share = f" ({100 * sum(self.counts.values()) / pixels:.1f} % of its {pixels} px)"
        self.short = (
            f"mask holds {kind} in no class and no ignore entry: {list_counts(self.counts)}"
            f"{share}"
            + ("; not one of its pixels has a class's " + kind[:-1] if matched == 0 else "")
        )
        cf = f" {self.class_file}" if self.class_file is not None else ""
        text = f"mask holds {kind} in no class and no ignore entry of the class file{cf}: "
        text += f"{list_counts(self.counts)}{share}. "
        if matched == 0:
            text += (
                f"Not one of its pixels has a class's {kind[:-1]}: the class file's {kind} "
                "do not match the masks. "
            )
        super().__init__(f"{text}The class file gives {valid}. {_advice(kind)}", path)


def _advice(kind: str) -> str:
    if kind == "colours":
        return (
            "Give each of these colours its class (or list it under ignore) in a class file "
            "and use that file (--classes FILE for `landcover data inspect` and `bench "
            "regions`, --data.options '{classes: FILE}' for `landcover train`); `landcover "
            "data inspect DATASET --classes FILE` checks every mask against it."
        )
    return (
        "Add the missing classes to the class file, declare them as the ignore value, or "
        "fix the mask."
    )


def list_counts(counts: Mapping[int | tuple[int, ...], int], top: int = 10) -> str:
    """``"(60, 16, 152) (5120 px), 7 (12 px) and 3 more"``: the largest counts first."""
    shown = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
    listed = ", ".join(f"{v} ({n} px)" for v, n in shown)
    return listed + (f" and {len(counts) - len(shown)} more" if len(counts) > len(shown) else "")


def mismatch_summary(problems: Sequence[Exception]) -> list[str]:
    """One paragraph per class file whose masks hold values or colours it does not define.

    Sums the pixel counts of every :class:`MaskValueError` of that class file, says whether
    any mask pixel matched a class at all and, for colours, ends with a class file to start
    from (the masks' colours, largest first, with placeholder names).
    """
    groups: dict[Path | None, list[MaskValueError]] = {}
    for p in problems:
        if isinstance(p, MaskValueError):
            groups.setdefault(p.class_file, []).append(p)
    out = []
    for class_file, errors in groups.items():
        counts: dict[int | tuple[int, ...], int] = {}
        for err in errors:
            for v, n in err.counts.items():
                counts[v] = counts.get(v, 0) + n
        kind = errors[0].kind
        of = f"the class file {class_file}" if class_file is not None else "the class scheme"
        text = f"{len(errors)} mask(s) hold {kind} in no class and no ignore entry of {of}"
        if all(e.matched == 0 for e in errors):
            text += (
                f"; not one of their pixels has a class's {kind[:-1]}, so the class file's "
                f"{kind} do not match the masks"
            )
        text += (
            f". In all those masks: {list_counts(counts)}. The class file gives "
            f"{errors[0].valid}. {_advice(kind)}"
        )
        if kind == "colours":
            ranked = sorted(counts, key=lambda v: -counts[v])
            text += "\nA class file to start from (name each class, or move it to ignore):"
            text += "\nclasses:\n" + "\n".join(
                f"  - {{name: CLASS_{i + 1}, color: {list(c)}}}"  # type: ignore[arg-type]
                for i, c in enumerate(ranked)
            )
            if errors[0].ignore:
                text += f"\nignore: {[list(c) for c in errors[0].ignore]}"  # type: ignore[arg-type]
        out.append(text)
    return out
