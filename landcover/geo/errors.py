"""Errors of the geospatial data layer: each names the file and says what to do."""

from __future__ import annotations

from collections.abc import Mapping
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

    Attributes:
        counts: Offending raw value (an int or an RGB tuple) -> number of pixels.
    """

    def __init__(
        self,
        path: str | Path | None,
        counts: Mapping[int | tuple[int, ...], int],
        valid: str,
    ) -> None:
        self.counts = dict(counts)
        shown = sorted(self.counts.items(), key=lambda kv: -kv[1])[:10]
        listed = ", ".join(f"{v} ({n} px)" for v, n in shown)
        more = f" and {len(self.counts) - len(shown)} more" if len(self.counts) > len(shown) else ""
        super().__init__(
            f"mask holds values not in the class file: {listed}{more}. "
            f"Valid values are {valid}; add the missing classes to the class file, "
            "declare them as the ignore value, or fix the mask.",
            path,
        )
