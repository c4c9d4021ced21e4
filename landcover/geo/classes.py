"""Class schemes: class names, how masks on disk encode them, display colours, ignore index.

A mask on disk stores each pixel's class either as an integer *value* (one band) or as an
RGB *colour* (three bands, as in DeepGlobe). :class:`ClassScheme` turns such a raw mask into
class indices ``0..n-1`` with :attr:`ClassScheme.ignore_index` (255 by default) for
unlabeled pixels, and refuses masks holding values it does not know, naming the file, the
offending values and their pixel counts.

A class file (``classes.yaml`` / ``.json``, format in :mod:`landcover.geo.class_file`, which
checks every field) lists classes with a ``value`` or an RGB ``color`` each and optional
``ignore`` value(s); a class's index is its position in the list.

Palette (mode "P") masks are decoded through their palette by
:func:`landcover.geo.folder.decode_palette`, so a colour-coded class file reads RGB and
palette PNGs alike. Decoding is a table lookup (no sort of the pixels), a few tens of
milliseconds per megapixel.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml

from landcover.geo.class_file import MAX_CLASS_FILE_BYTES as MAX_CLASS_FILE_BYTES
from landcover.geo.class_file import excerpt as excerpt
from landcover.geo.class_file import load_class_file, scheme_fields
from landcover.geo.errors import GeoDataError, MaskValueError

#: Class index of unlabeled pixels in every mask the readers return.
IGNORE_INDEX = 255

#: Display colours for schemes whose class file gives none (tab10-like, then grey ramp).
DEFAULT_PALETTE: tuple[tuple[int, int, int], ...] = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
    (174, 199, 232), (255, 187, 120), (152, 223, 138), (255, 152, 150), (197, 176, 213),
    (196, 156, 148), (247, 182, 210), (199, 199, 199), (219, 219, 141), (158, 218, 229),
)  # fmt: skip

Encoding = Literal["value", "color"]


def _pack(c: Sequence[int]) -> int:
    return (int(c[0]) << 16) | (int(c[1]) << 8) | int(c[2])


def _unpack(v: int) -> tuple[int, int, int]:
    return (v >> 16, (v >> 8) & 255, v & 255)


def _palette(n: int) -> tuple[tuple[int, int, int], ...]:
    extra = [(g, g, g) for g in np.linspace(40, 220, max(0, n - len(DEFAULT_PALETTE))).astype(int)]
    return tuple(DEFAULT_PALETTE[:n]) + tuple((int(r), int(g), int(b)) for r, g, b in extra)


@dataclass(frozen=True)
class ClassScheme:
    """Names, on-disk encoding and display colours of a set of land-cover classes.

    Attributes:
        names: Class names; a class's index is its position.
        values: Raw integer value of each class in value-coded masks (``None`` for colour).
        colors: RGB display colour of each class (also the code of colour-coded masks).
        encoding: ``"value"`` (one-band integer masks) or ``"color"`` (RGB masks).
        ignore_value: Raw value(s) meaning unlabeled: an int (value masks) or RGB triple (colour
            masks), or a tuple of several of them; ``None`` for none. See
            :attr:`ignore_values`.
        ignore_index: Class index given to unlabeled pixels (255 by default).
        threshold: For colour masks, threshold each channel at this level first (DeepGlobe
            masks are JPEG-like, not pure 0/255, and are read with 128).
        source: The class file the scheme was read from (named in mask errors), if any; not
            part of the scheme's identity.
    """

    names: tuple[str, ...]
    values: tuple[int, ...] | None = None
    colors: tuple[tuple[int, int, int], ...] = field(default=())
    encoding: Encoding = "value"
    ignore_value: int | tuple[int, ...] | tuple[tuple[int, int, int], ...] | None = None
    ignore_index: int = IGNORE_INDEX
    threshold: int | None = None
    source: Path | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        n = len(self.names)
        if n == 0:
            raise GeoDataError("a class scheme needs at least one class")
        if len(set(self.names)) != n:
            raise GeoDataError(f"class names must be unique; got {list(self.names)}")
        if not 0 <= self.ignore_index <= 255 or self.ignore_index < n:
            raise GeoDataError(
                f"ignore_index {self.ignore_index} must be in [{n}, 255] (after the class indices)"
            )
        if self.encoding not in ("value", "color"):
            raise GeoDataError(f"encoding must be 'value' or 'color'; got {self.encoding!r}")
        if self.encoding == "value":
            if self.values is None or len(self.values) != n:
                raise GeoDataError("a value-coded scheme needs one integer value per class")
            if len(set(self.values)) != n:
                raise GeoDataError(f"class values must be unique; got {list(self.values)}")
        object.__setattr__(self, "ignore_value", self._canonical_ignore(self.ignore_value))
        if self.encoding == "value":
            clash = [v for v in self.ignore_values if v in self.values]  # type: ignore[operator]
            if clash:
                raise GeoDataError(f"ignore value {clash[0]} is also a class value")
        if not self.colors:
            object.__setattr__(self, "colors", _palette(n))
        colors = tuple(tuple(int(c) for c in rgb) for rgb in self.colors)
        object.__setattr__(self, "colors", colors)
        if len(colors) != n or any(
            len(c) != 3 or not all(0 <= v <= 255 for v in c) for c in colors
        ):
            raise GeoDataError(f"need one RGB colour (0..255 each) per class; got {list(colors)}")
        if self.encoding == "color" and len(set(colors)) != n:
            raise GeoDataError("colour-coded classes need distinct colours")
        if self.encoding == "color":
            clash = [c for c in self.ignore_values if c in colors]
            if clash:
                raise GeoDataError(f"ignore colour {clash[0]} is also a class colour")

    def _canonical_ignore(self, v: Any) -> Any:
        """One value (int / RGB triple) as is, several as a tuple of them, ``None`` if none."""
        if v is None:
            return None
        if self.encoding == "value":
            if isinstance(v, int | np.integer):
                return int(v)
            items = tuple(int(x) for x in v)
        else:
            if len(v) == 3 and all(isinstance(x, int | np.integer) for x in v):
                return tuple(int(x) for x in v)
            items = tuple(tuple(int(c) for c in x) for x in v)  # type: ignore[assignment]
        if not items:
            return None
        return items[0] if len(items) == 1 else items

    @property
    def ignore_values(self) -> tuple[Any, ...]:
        """Every raw value (int) or colour (RGB triple) that means unlabeled."""
        v = self.ignore_value
        if v is None:
            return ()
        if self.encoding == "value":
            return (v,) if isinstance(v, int) else tuple(v)
        return (v,) if isinstance(v[0], int) else tuple(v)  # type: ignore[index]

    @property
    def num_classes(self) -> int:
        """Number of classes (excluding the ignore index)."""
        return len(self.names)

    # ------------------------------------------------------------------ encoding
    def encode(
        self, raw: np.ndarray, source: str | Path | None = None, *,
        weights: np.ndarray | None = None,
    ) -> np.ndarray:  # fmt: skip
        """Turn a raw mask into class indices.

        Args:
            raw: ``(H, W)`` integer mask (value encoding) or ``(3, H, W)`` / ``(H, W, 3)``
                RGB mask (colour encoding).
            source: File the mask came from, named in errors.
            weights: Pixels each raw entry stands for (a palette's used colours), ``(H, W)``;
                only the pixel counts of errors use it. Default: one pixel each.

        Returns:
            ``(H, W)`` int64 class indices, :attr:`ignore_index` for unlabeled pixels.

        Raises:
            MaskValueError: The mask holds values or colours the scheme does not define.
            GeoDataError: The mask has the wrong shape for the encoding.
        """
        if self.encoding == "value":
            if raw.ndim == 3 and raw.shape[0] == 1:
                raw = raw[0]
            if raw.ndim != 2:
                raise GeoDataError(
                    f"value-coded mask must have one band; got shape {raw.shape}. Use a "
                    "single-band mask or give the classes colours in the class file.",
                    source,
                )
            assert self.values is not None
            table = {int(v): i for i, v in enumerate(self.values)}
            table.update({int(v): self.ignore_index for v in self.ignore_values})
            if raw.dtype.kind != "f":
                return self._lookup(raw, table, source, lambda v: int(v), weights)
            # float masks (GIS exports): integral values are class values, NaN is unlabeled
            nan = np.isnan(raw)
            odd = ~nan & ~(np.isfinite(raw) & (raw == np.round(raw)))
            if odd.any():
                shown = ", ".join(f"{v:g}" for v in np.unique(raw[odd])[:5])
                raise GeoDataError(
                    f"value-coded mask holds {int(odd.sum())} px of non-integer values "
                    f"({shown}); class values are integers: save the mask as integers "
                    "(e.g. uint8) with the class file's values",
                    source,
                )
            known = float(next(iter(table)))
            out = self._lookup(np.where(nan, known, raw).astype(np.int64), table, source,
                               lambda v: int(v), weights)  # fmt: skip
            out[nan] = self.ignore_index
            return out
        rgb = self._as_rgb(raw, source)
        if self.threshold is not None:
            rgb = (rgb >= self.threshold).astype(np.uint8) * np.uint8(255)
        codes = (
            (rgb[0].astype(np.uint32) << 16) | (rgb[1].astype(np.uint32) << 8) | rgb[2]
        )  # fmt: skip
        table = {_pack(c): i for i, c in enumerate(self.colors)}
        table.update({_pack(c): self.ignore_index for c in self.ignore_values})
        return self._lookup(codes, table, source, _unpack, weights)

    def _as_rgb(self, raw: np.ndarray, source: str | Path | None) -> np.ndarray:
        if raw.ndim == 3 and raw.shape[0] in (3, 4):
            return raw[:3]
        if raw.ndim == 3 and raw.shape[-1] in (3, 4):
            return np.moveaxis(raw[..., :3], -1, 0)
        raise GeoDataError(
            f"colour-coded mask must have 3 bands (RGB); got shape {raw.shape}. Save the "
            "mask as RGB or give the classes integer values in the class file.",
            source,
        )

    def _lookup(
        self, codes: np.ndarray, table: Mapping[int, int], source: Any, show: Any,
        weights: np.ndarray | None = None,
    ) -> np.ndarray:  # fmt: skip
        """Map raw codes through ``table`` by binary search over the few known codes."""
        keys = np.array(sorted(table), dtype=np.int64)
        out_of = np.array([table[int(k)] for k in keys], dtype=np.int64)
        flat = codes.reshape(-1)
        if codes.dtype == np.uint8 and keys.min() >= 0:
            # small integer masks: a 256-entry table, no search at all
            lut = np.full(256, -1, dtype=np.int64)
            inside = keys[keys < 256]
            lut[inside] = out_of[keys < 256]
            result = lut[flat]
        else:
            pos = np.clip(np.searchsorted(keys, flat), 0, len(keys) - 1)
            result = np.where(keys[pos] == flat, out_of[pos], -1)
        bad = result < 0
        if bad.any():
            w = np.ones(flat.shape, np.int64) if weights is None else weights.reshape(-1)
            uniq, inverse = np.unique(flat[bad], return_inverse=True)
            counts = np.bincount(inverse.reshape(-1), weights=w[bad], minlength=len(uniq))
            raise MaskValueError(
                source,
                {show(int(u)): int(n) for u, n in zip(uniq, counts)},
                self.describe_values(),
                pixels=int(w.sum()),
                matched=int(w[(result >= 0) & (result < self.num_classes)].sum()),
                class_file=self.source,
                kind="colours" if self.encoding == "color" else "values",
                ignore=self.ignore_values,
            )
        return result.reshape(codes.shape)

    def describe_values(self) -> str:
        """Human-readable list of the raw values this scheme accepts."""
        if self.encoding == "value":
            assert self.values is not None
            items = [f"{v} ({n})" for v, n in zip(self.values, self.names)]
        else:
            items = [f"{c} ({n})" for c, n in zip(self.colors, self.names)]
        items.extend(f"{v} (ignore)" for v in self.ignore_values)
        return ", ".join(items)

    def raw_values(self) -> list[int]:
        """Raw value of each class as written to value-coded masks (index when colour-coded)."""
        return list(self.values) if self.values is not None else list(range(self.num_classes))

    # ------------------------------------------------------------------ display
    def colorize(self, index_mask: np.ndarray) -> np.ndarray:
        """Colour a ``(H, W)`` class-index mask as ``(H, W, 3)`` uint8 (ignore is black)."""
        lut = np.zeros((256, 3), dtype=np.uint8)
        lut[: self.num_classes] = np.asarray(self.colors, dtype=np.uint8)
        return lut[np.clip(np.asarray(index_mask), 0, 255).astype(np.int64)]

    def colormap(self, nodata: int | None = None) -> dict[int, tuple[int, int, int, int]]:
        """GDAL colour table of a class map holding :meth:`raw_values` (``nodata`` transparent).

        Keyed by each class's value (its index for colour-coded schemes; see
        :func:`landcover.geo.map_values.map_scheme` for maps of indices).
        """
        cmap = {v: (*c, 255) for v, c in zip(self.raw_values(), self.colors)}
        if nodata is not None:
            cmap[int(nodata)] = (0, 0, 0, 0)
        return cmap

    # ------------------------------------------------------------------ files
    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form, the same as a class file (plus ``ignore_index``)."""
        classes: list[dict[str, Any]] = []
        for i, name in enumerate(self.names):
            entry: dict[str, Any] = {"name": name, "color": list(self.colors[i])}
            if self.values is not None:
                entry["value"] = self.values[i]
            classes.append(entry)
        out: dict[str, Any] = {"classes": classes, "ignore_index": self.ignore_index}
        if self.ignore_value is not None:
            values = [v if isinstance(v, int) else list(v) for v in self.ignore_values]
            out["ignore"] = values[0] if len(values) == 1 else values
        if self.threshold is not None:
            out["threshold"] = self.threshold
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str | Path | None = None) -> ClassScheme:
        """Build a scheme from a class file's content (see the module docstring).

        Raises:
            GeoDataError: A malformed field; the message names ``source`` and the field.
        """
        fields = scheme_fields(data, source)
        try:
            return cls(**fields, source=None if source is None else Path(source))
        except GeoDataError as err:
            raise GeoDataError(str(err), source) from None

    @classmethod
    def from_file(cls, path: str | Path) -> ClassScheme:
        """Read a ``classes.yaml`` / ``classes.json`` file (see :func:`load_class_file`)."""
        path = Path(path)
        return cls.from_dict(load_class_file(path), source=path)

    def save(self, path: str | Path) -> Path:
        """Write the scheme as a class file (YAML or JSON by suffix), atomically."""
        path = Path(path)
        data = self.to_dict()
        text = (
            json.dumps(data, indent=2)
            if path.suffix.lower() == ".json"
            else yaml.safe_dump(data, sort_keys=False)
        )
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
        return path

    def remapped(self, keep: Sequence[int]) -> tuple[ClassScheme, np.ndarray]:
        """Sub-scheme of the classes ``keep`` and the index lookup table old -> new.

        Returns:
            The new scheme and a ``(256,)`` int64 table mapping old indices to new ones
            (dropped classes and the old ignore index map to the ignore index).
        """
        lut = np.full(256, self.ignore_index, dtype=np.int64)
        for new, old in enumerate(keep):
            if not 0 <= old < self.num_classes:
                raise KeyError(f"class index {old} not in 0..{self.num_classes - 1}")
            lut[old] = new
        scheme = ClassScheme(
            names=tuple(self.names[k] for k in keep),
            values=None if self.values is None else tuple(self.values[k] for k in keep),
            colors=tuple(self.colors[k] for k in keep),
            encoding=self.encoding,
            ignore_value=self.ignore_value,
            ignore_index=self.ignore_index,
            threshold=self.threshold,
            source=self.source,
        )
        return scheme, lut
