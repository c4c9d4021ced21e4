"""Schema of a class file: check every field of ``classes.yaml`` / ``classes.json``.

:meth:`landcover.geo.classes.ClassScheme.from_dict` calls :func:`scheme_fields` on the
parsed content. Every mistake raises :class:`~landcover.geo.errors.GeoDataError` naming the
file and the field (``classes[2].color``, ``ignore[1]``, ...) with what was expected and an
example, never a ``TypeError`` from deeper down. Accepted content::

    classes:                                  # required, a non-empty list
      - {name: water, value: 1, color: [0, 0, 255]}
      - {name: forest, value: 2}
    ignore: 0                                 # optional: one value, or a list of values
    ignore_index: 255                         # optional class index of unlabeled pixels
    threshold: 128                            # optional (colour masks): binarise channels

For colour-coded masks every class has ``color`` and none has ``value``; ``ignore`` is then
one RGB triple (``[155, 155, 155]``) or a list of them (``[[155, 155, 155], [0, 0, 0]]``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from landcover.geo.errors import GeoDataError

#: Top-level keys a class file may hold.
KEYS = ("classes", "ignore", "ignore_index", "threshold")
#: Keys of one class entry.
CLASS_KEYS = ("name", "value", "color")

_EXAMPLE = (
    "e.g. `classes: [{name: water, value: 1}, {name: forest, value: 2}]` with `ignore: 0`, "
    "or for RGB masks `classes: [{name: water, color: [0, 0, 255]}, ...]` with "
    "`ignore: [[155, 155, 155], [0, 0, 0]]`"
)


def _fail(source: str | Path | None, field: str, message: str) -> GeoDataError:
    return GeoDataError(f"class file field {field!r}: {message}", source)


def _int(v: Any, source: str | Path | None, field: str, lo: int | None = None,
         hi: int | None = None) -> int:  # fmt: skip
    """An integer (not a bool, not a fractional float, not a string) within ``[lo, hi]``."""
    ok = isinstance(v, int) and not isinstance(v, bool)
    if isinstance(v, float) and v.is_integer():
        v, ok = int(v), True
    if not ok:
        raise _fail(source, field, f"must be an integer; got {v!r} ({type(v).__name__})")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise _fail(source, field, f"must be in {lo}..{hi}; got {v}")
    return int(v)


def _rgb(v: Any, source: str | Path | None, field: str) -> tuple[int, int, int]:
    if not isinstance(v, list | tuple) or len(v) != 3:
        raise _fail(
            source, field, f"must be an RGB triple like [0, 0, 255]; got {v!r}"
        )  # fmt: skip
    r, g, b = (_int(c, source, f"{field}[{i}]", 0, 255) for i, c in enumerate(v))
    return (r, g, b)


def _ignore(v: Any, encoding: str, source: str | Path | None) -> Any:
    """``None``, one value / RGB triple, or a tuple of several."""
    if v is None:
        return None
    if isinstance(v, Mapping):
        raise _fail(
            source,
            "ignore",
            f"must be a value or a list of values, not a mapping ({dict(v)!r}); write e.g. "
            "`ignore: 0`, `ignore: [0, 255]`, `ignore: [155, 155, 155]` or "
            "`ignore: [[155, 155, 155], [0, 0, 0]]`",
        )
    if encoding == "value":
        if isinstance(v, list | tuple):
            if not v:
                raise _fail(source, "ignore", "is an empty list; drop it or give values")
            values = tuple(_int(x, source, f"ignore[{i}]") for i, x in enumerate(v))
            return values[0] if len(values) == 1 else values
        return _int(v, source, "ignore")
    if not isinstance(v, list | tuple) or not v:
        raise _fail(
            source,
            "ignore",
            f"the classes are RGB colours, so ignore must be an RGB triple or a list of "
            f"them (e.g. [[155, 155, 155], [0, 0, 0]]); got {v!r}",
        )
    if all(isinstance(x, list | tuple) for x in v):
        triples = tuple(_rgb(x, source, f"ignore[{i}]") for i, x in enumerate(v))
        return triples[0] if len(triples) == 1 else triples
    return _rgb(v, source, "ignore")


def scheme_fields(data: Any, source: str | Path | None = None) -> dict[str, Any]:
    """Check a class file's content and return the keyword arguments of ``ClassScheme``.

    Args:
        data: The parsed YAML / JSON content.
        source: The file, named in errors.

    Raises:
        GeoDataError: A field is missing, of the wrong type or out of range; the message
            names the file and the field.
    """
    if not isinstance(data, Mapping):
        raise GeoDataError(
            f"class file must be a mapping with a 'classes' list; got "
            f"{type(data).__name__}. {_EXAMPLE}",
            source,
        )
    entries = data.get("classes")
    if not isinstance(entries, list) or not entries:
        raise _fail(
            source,
            "classes",
            f"the file needs a non-empty 'classes' list of {{name, value | color}}; {_EXAMPLE}",
        )
    unknown = [str(k) for k in data if k not in KEYS]
    if unknown:
        raise _fail(source, unknown[0], f"unknown key; a class file holds {', '.join(KEYS)}")
    names: list[str] = []
    values: list[int | None] = []
    colors: list[tuple[int, int, int] | None] = []
    for i, e in enumerate(entries):
        where = f"classes[{i}]"
        if not isinstance(e, Mapping):
            raise _fail(
                source, where, f"must be a mapping like {{name: water, value: 1}}; got {e!r}"
            )
        extra = [str(k) for k in e if k not in CLASS_KEYS]
        if extra:
            raise _fail(
                source, f"{where}.{extra[0]}", "unknown key; a class has name, value, color"
            )
        name = e.get("name")
        if name is None or isinstance(name, list | dict | bool) or str(name).strip() == "":
            raise _fail(source, f"{where}.name", f"every class needs a 'name' (text); got {e!r}")
        names.append(str(name))
        v = e.get("value")
        values.append(None if v is None else _int(v, source, f"{where}.value"))
        c = e.get("color")
        colors.append(None if c is None else _rgb(c, source, f"{where}.color"))
    has_value = [v is not None for v in values]
    has_color = [c is not None for c in colors]
    if all(has_value):
        encoding = "value"
    elif not any(has_value) and all(has_color):
        encoding = "color"
    else:
        # the first class that breaks the rule of the majority (values, else colours)
        want_value = any(has_value)
        lacking = has_value if want_value else has_color
        bad = lacking.index(False)
        raise _fail(
            source,
            f"classes[{bad}]",
            "give every class an integer 'value' (value-coded masks) or, with no values, "
            "every class an RGB 'color' (colour-coded masks); the class file mixes both or "
            "gives neither",
        )
    threshold = data.get("threshold")
    if threshold is not None:
        threshold = _int(threshold, source, "threshold", 1, 255)
    ignore_index = _int(data.get("ignore_index", 255), source, "ignore_index", 0, 255)
    return {
        "names": tuple(names),
        "values": tuple(int(v) for v in values) if encoding == "value" else None,  # type: ignore[arg-type]
        "colors": tuple(colors) if all(has_color) else (),
        "encoding": encoding,
        "ignore_value": _ignore(data.get("ignore"), encoding, source),
        "ignore_index": ignore_index,
        "threshold": threshold,
    }
