"""Class schemes: class names, how masks on disk encode them, display colours, ignore index.

A mask on disk stores each pixel's class either as an integer *value* (one band) or as an
RGB *colour* (three bands, as in DeepGlobe). :class:`ClassScheme` turns such a raw mask into
class indices ``0..n-1`` with :attr:`ClassScheme.ignore_index` (255 by default) for
unlabeled pixels, and refuses masks holding values it does not know, naming the file, the
offending values and their pixel counts.

Class file (``classes.yaml`` or ``classes.json``) of a users' region folder::

    classes:
      - {name: water, value: 1, color: [0, 0, 255]}   # value-coded masks
      - {name: forest, value: 2}                      # colour optional (display only)
    ignore: 0                                         # optional raw value of unlabeled pixels

or, for RGB-coded masks, ``color`` on every class and no ``value`` (``ignore`` is then an
RGB triple). The class index of a class is its position in the list.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml

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
        ignore_value: Raw value (int, or RGB triple for colour masks) meaning unlabeled.
        ignore_index: Class index given to unlabeled pixels (255 by default).
        threshold: For colour masks, threshold each channel at this level first (DeepGlobe
            masks are JPEG-like, not pure 0/255, and are read with 128).
    """

    names: tuple[str, ...]
    values: tuple[int, ...] | None = None
    colors: tuple[tuple[int, int, int], ...] = field(default=())
    encoding: Encoding = "value"
    ignore_value: int | tuple[int, int, int] | None = None
    ignore_index: int = IGNORE_INDEX
    threshold: int | None = None

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
            if self.ignore_value is not None and self.ignore_value in self.values:
                raise GeoDataError(f"ignore value {self.ignore_value} is also a class value")
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

    @property
    def num_classes(self) -> int:
        """Number of classes (excluding the ignore index)."""
        return len(self.names)

    # ------------------------------------------------------------------ encoding
    def encode(self, raw: np.ndarray, source: str | Path | None = None) -> np.ndarray:
        """Turn a raw mask into class indices.

        Args:
            raw: ``(H, W)`` integer mask (value encoding) or ``(3, H, W)`` / ``(H, W, 3)``
                RGB mask (colour encoding).
            source: File the mask came from, named in errors.

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
            codes = raw.astype(np.int64)
            table = {v: i for i, v in enumerate(self.values)}
            if self.ignore_value is not None:
                table[int(self.ignore_value)] = self.ignore_index
            return self._lookup(codes, table, source, lambda v: int(v))
        rgb = self._as_rgb(raw, source)
        if self.threshold is not None:
            rgb = np.where(rgb >= self.threshold, 255, 0)
        codes = (rgb[0].astype(np.int64) << 16) | (rgb[1].astype(np.int64) << 8) | rgb[2]
        pack = lambda c: (int(c[0]) << 16) | (int(c[1]) << 8) | int(c[2])  # noqa: E731
        table = {pack(c): i for i, c in enumerate(self.colors)}
        if self.ignore_value is not None:
            table[pack(self.ignore_value)] = self.ignore_index  # type: ignore[arg-type]
        return self._lookup(codes, table, source, lambda v: (v >> 16, (v >> 8) & 255, v & 255))

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
        self, codes: np.ndarray, table: Mapping[int, int], source: Any, show: Any
    ) -> np.ndarray:
        uniq, inverse, counts = np.unique(codes, return_inverse=True, return_counts=True)
        lut = np.array([table.get(int(u), -1) for u in uniq], dtype=np.int64)
        if (lut < 0).any():
            bad = {show(int(u)): int(n) for u, n, m in zip(uniq, counts, lut) if m < 0}
            raise MaskValueError(source, bad, self.describe_values())
        return lut[inverse.reshape(codes.shape)]

    def describe_values(self) -> str:
        """Human-readable list of the raw values this scheme accepts."""
        if self.encoding == "value":
            assert self.values is not None
            items = [f"{v} ({n})" for v, n in zip(self.values, self.names)]
        else:
            items = [f"{c} ({n})" for c, n in zip(self.colors, self.names)]
        if self.ignore_value is not None:
            items.append(f"{self.ignore_value} (ignore)")
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
        """GDAL colour table of a class-index raster (``nodata`` transparent)."""
        cmap = {i: (*c, 255) for i, c in enumerate(self.colors)}
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
            iv = self.ignore_value
            out["ignore"] = iv if isinstance(iv, int) else list(iv)
        if self.threshold is not None:
            out["threshold"] = self.threshold
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str | Path | None = None) -> ClassScheme:
        """Build a scheme from a class file's content (see the module docstring)."""
        if not isinstance(data, Mapping) or not isinstance(data.get("classes"), list):
            raise GeoDataError(
                "class file must be a mapping with a 'classes' list of {name, value | color}",
                source,
            )
        entries = data["classes"]
        names, values, colors = [], [], []
        for i, e in enumerate(entries):
            if not isinstance(e, Mapping) or "name" not in e:
                raise GeoDataError(f"class #{i} needs a 'name'; got {e!r}", source)
            names.append(str(e["name"]))
            values.append(e.get("value"))
            colors.append(e.get("color"))
        has_value = [v is not None for v in values]
        has_color = [c is not None for c in colors]
        if all(has_value):
            encoding: Encoding = "value"
        elif not any(has_value) and all(has_color):
            encoding = "color"
        else:
            raise GeoDataError(
                "give every class an integer 'value' (value-coded masks) or, with no values, "
                "every class an RGB 'color' (colour-coded masks); the class file mixes both",
                source,
            )
        ignore = data.get("ignore")
        if isinstance(ignore, list):
            ignore = tuple(int(v) for v in ignore)
        elif ignore is not None:
            ignore = int(ignore)
        try:
            return cls(
                names=tuple(names),
                values=tuple(int(v) for v in values) if encoding == "value" else None,
                colors=tuple(tuple(c) for c in colors) if all(has_color) else (),
                encoding=encoding,
                ignore_value=ignore,
                ignore_index=int(data.get("ignore_index", IGNORE_INDEX)),
                threshold=data.get("threshold"),
            )
        except GeoDataError as err:
            raise GeoDataError(str(err), source) from None
        except (TypeError, ValueError) as err:
            raise GeoDataError(f"invalid class file: {err}", source) from None

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
        )
        return scheme, lut


#: Largest class file read (a class file lists a few classes; see :func:`load_class_file`).
MAX_CLASS_FILE_BYTES = 64 * 1024


class _NoAliasLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses aliases (``*name``).

    Aliases let a few hundred bytes expand into gigabytes ("billion laughs"); a class file
    never needs them.
    """

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "YAML aliases (*name) are not allowed in a class file", event.start_mark
            )
        return super().compose_node(parent, index)


def excerpt(text: str, limit: int = 200) -> str:
    """``text`` cut to ``limit`` characters (with an ellipsis), for quoting in errors."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def load_class_file(path: Path) -> Any:
    """Parse a class file safely: size-capped, YAML without aliases, short error excerpts.

    Raises:
        GeoDataError: The file is over :data:`MAX_CLASS_FILE_BYTES`, unreadable, uses YAML
            aliases, or is not valid YAML/JSON (the message quotes at most a short excerpt).
    """
    try:
        size = path.stat().st_size
        if size > MAX_CLASS_FILE_BYTES:
            raise GeoDataError(
                f"class file is {size} bytes, over the limit of {MAX_CLASS_FILE_BYTES}; a "
                "class file lists a few classes",
                path,
            )
        with open(path, "rb") as fh:
            text = fh.read(MAX_CLASS_FILE_BYTES + 1).decode("utf-8")
        if path.suffix.lower() == ".json":
            return json.loads(text)
        return yaml.load(text, Loader=_NoAliasLoader)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as err:
        raise GeoDataError(f"cannot read class file: {excerpt(str(err))}", path) from None
    except RecursionError:
        raise GeoDataError("cannot read class file: nested too deeply", path) from None
