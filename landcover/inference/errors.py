"""Errors of the inference area; every message says what was wrong and what to do."""

from __future__ import annotations


class BundleError(ValueError):
    """A model bundle cannot be read, is incompatible, or does not fit the input."""


class BandMismatchError(BundleError):
    """The input raster's band count differs from the bundle's.

    Attributes:
        expected: Bands the model was trained on.
        got: Bands of the input.
    """

    def __init__(self, expected: int, got: int, band_names: list[str], source: str = "") -> None:
        where = f" {source}" if source else ""
        names = ", ".join(band_names) if band_names else "unnamed"
        super().__init__(
            f"the input{where} has {got} band(s) but the model was trained on {expected} "
            f"({names}); give a raster with exactly these bands in this order, or use a "
            "bundle trained on your sensor's bands"
        )
        self.expected = expected
        self.got = got
