"""A class file: read ``classes.yaml`` / ``classes.json`` safely and check every field.

:func:`load_class_file` parses it (size-capped, YAML without aliases);
:meth:`landcover.geo.classes.ClassScheme.from_dict` calls :func:`scheme_fields` on the
parsed content. Every mistake raises :class:`~landcover.geo.errors.GeoDataError` naming the
file and the field (``classes[2].color``, ``ignore[1]``, ...) with what was expected and an
example, never a ``TypeError`` from deeper down. Two layouts are read.

Our own::

    classes:                                  # required, a non-empty list
      - {name: water, value: 1, color: [0, 0, 255]}
      - {name: forest, value: 2}
    ignore: 0                                 # optional: one value, or a list of values
    ignore_index: 255                         # optional class index of unlabeled pixels
    threshold: 128                            # optional (colour masks): binarise channels

For colour-coded masks every class has ``color`` and none has ``value``; ``ignore`` is then
one colour (``[155, 155, 155]``) or a list of them (``[[155, 155, 155], [0, 0, 0]]``). A
colour is an RGB triple or a hex string ``"#RRGGBB"`` (``"#3C1098"`` is ``[60, 16, 152]``).

Supervisely's project meta (``meta.json``, also what Humans in the Loop ship as
``classes.json``; https://developer.supervisely.com/getting-started/
supervisely-annotation-format/project-classes-and-tags)::

    {"classes": [{"title": "Water", "shape": "polygon", "color": "#50E3C2",
                  "geometry_config": {}, "id": 1, "hotkey": ""}, ...],
     "tags": [], "projectType": "images", "projectSettings": {}}

A class's ``title`` is its name when it has no ``name``. Its ``shape``, ``geometry_config``,
``id``, ``hotkey`` and ``description`` and the file's ``tags`` (``tags_images``,
``tags_objects``), ``projectType`` and ``projectSettings`` are checked for their type and
otherwise not used. Supervisely's meta has no field for "no class"; projects that paint the
unlabeled area (Humans in the Loop's Dubai dataset does) give it a class titled "Unlabeled".
So a class whose ``title`` is "Unlabeled" or "Unlabelled" (any case) is not a class here:
its colour is added to ``ignore``.
Nothing else is taken as unlabeled by its name ("background", "unknown" and a ``name:
unlabeled`` of our own layout stay classes), since a dataset may well mean them as classes.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from landcover.geo.errors import GeoDataError

#: Top-level keys a class file may hold.
KEYS = ("classes", "ignore", "ignore_index", "threshold")
#: Keys of one class entry (``title`` is Supervisely's name).
CLASS_KEYS = ("name", "title", "value", "color")
#: Top-level keys of Supervisely's project meta: checked for their type, not used.
SUPERVISELY_KEYS: dict[str, type] = {
    "tags": list, "tags_images": list, "tags_objects": list, "projectType": str,
    "projectSettings": Mapping,
}  # fmt: skip
#: Per-class keys of Supervisely's project meta: checked for their type, not used.
SUPERVISELY_CLASS_KEYS: dict[str, type] = {
    "shape": str, "geometry_config": Mapping, "id": int, "hotkey": str, "description": str,
}  # fmt: skip
#: Supervisely class titles meaning unlabeled pixels (compared case-insensitively).
UNLABELED_TITLES = ("unlabeled", "unlabelled")

_EXAMPLE = (
    "e.g. `classes: [{name: water, value: 1}, {name: forest, value: 2}]` with `ignore: 0`, "
    "or for RGB masks `classes: [{name: water, color: [0, 0, 255]}, ...]` (or "
    "`color: '#0000FF'`) with `ignore: [[155, 155, 155], [0, 0, 0]]`"
)
_HEX = re.compile(r"#[0-9a-fA-F]{6}")
_TYPE_NAMES = {list: "a list", str: "text", Mapping: "a mapping", int: "an integer"}


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


def _hex(v: str, source: str | Path | None, field: str) -> tuple[int, int, int]:
    """``"#RRGGBB"`` (either case) as an RGB triple."""
    text = v.strip()
    if _HEX.fullmatch(text):
        return (int(text[1:3], 16), int(text[3:5], 16), int(text[5:7], 16))
    digits = text.removeprefix("#")
    bad = [c for c in digits if c not in string.hexdigits]
    if not text.startswith("#"):
        why = "a hex colour starts with '#'"
    elif bad:
        why = f"{bad[0]!r} is not a hex digit 0-9, A-F"
    else:
        why = f"{len(digits)} hex digits, need 6"
    raise _fail(
        source,
        field,
        f"must be a hex colour '#RRGGBB' like '#3C1098' (= [60, 16, 152]) or an RGB triple "
        f"like [60, 16, 152]; got {v!r} ({why})",
    )


def _rgb(v: Any, source: str | Path | None, field: str) -> tuple[int, int, int]:
    """A colour: an RGB triple of 0..255 or a hex string ``"#RRGGBB"``."""
    if isinstance(v, str):
        return _hex(v, source, field)
    if not isinstance(v, list | tuple) or len(v) != 3:
        raise _fail(
            source, field, f"must be an RGB triple like [0, 0, 255] or '#0000FF'; got {v!r}"
        )  # fmt: skip
    r, g, b = (_int(c, source, f"{field}[{i}]", 0, 255) for i, c in enumerate(v))
    return (r, g, b)


def _typed(v: Any, kind: type, source: str | Path | None, field: str) -> None:
    """A Supervisely field we do not use: ``None`` or of type ``kind``."""
    ok = v is None or (isinstance(v, kind) and not isinstance(v, bool))
    if not ok:
        raise _fail(
            source,
            field,
            f"must be {_TYPE_NAMES[kind]} (a field of Supervisely's meta.json, read and not "
            f"used); got {v!r}",
        )


def _ignore(v: Any, encoding: str, source: str | Path | None) -> list[Any]:
    """The ``ignore`` field as a list of values or RGB triples (empty when absent)."""
    if v is None:
        return []
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
            return [_int(x, source, f"ignore[{i}]") for i, x in enumerate(v)]
        return [_int(v, source, "ignore")]
    if isinstance(v, str):
        return [_rgb(v, source, "ignore")]
    if not isinstance(v, list | tuple) or not v:
        raise _fail(
            source,
            "ignore",
            f"the classes are RGB colours, so ignore must be a colour or a list of them "
            f"(e.g. [[155, 155, 155], [0, 0, 0]] or '#9B9B9B'); got {v!r}",
        )
    if any(isinstance(x, list | tuple | str) for x in v):
        return [_rgb(x, source, f"ignore[{i}]") for i, x in enumerate(v)]
    return [_rgb(v, source, "ignore")]


def _check_keys(
    entry: Mapping[Any, Any], allowed: tuple[str, ...], tolerated: Mapping[str, type],
    source: str | Path | None, where: str,
) -> None:  # fmt: skip
    """Refuse unknown keys; check the type of the tolerated Supervisely ones."""
    for key, value in entry.items():
        field = f"{where}.{key}" if where else str(key)
        if key in tolerated:
            _typed(value, tolerated[key], source, field)
        elif key not in allowed:
            raise _fail(
                source,
                field,
                f"unknown key; {'a class' if where else 'a class file'} holds "
                f"{', '.join(allowed)} (and Supervisely's {', '.join(tolerated)}, not used)",
            )


def _name(e: Mapping[Any, Any], source: str | Path | None, where: str) -> tuple[str, bool]:
    """A class's name (``name``, else Supervisely's ``title``) and whether it means unlabeled."""
    key = "name" if "name" in e or "title" not in e else "title"
    name = e.get(key)
    if name is None or isinstance(name, list | dict | bool) or str(name).strip() == "":
        raise _fail(
            source,
            f"{where}.{key}",
            f"every class needs a 'name' (or Supervisely's 'title') as text; got {dict(e)!r}",
        )
    unlabeled = key == "title" and str(name).strip().lower() in UNLABELED_TITLES
    return str(name), unlabeled


def scheme_fields(data: Any, source: str | Path | None = None) -> dict[str, Any]:
    """Check a class file's content and return the keyword arguments of ``ClassScheme``.

    Args:
        data: The parsed YAML / JSON content (either layout of the module docstring).
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
    _check_keys(data, KEYS, SUPERVISELY_KEYS, source, "")
    names: list[str] = []
    unlabeled: list[bool] = []
    values: list[int | None] = []
    colors: list[tuple[int, int, int] | None] = []
    for i, e in enumerate(entries):
        where = f"classes[{i}]"
        if not isinstance(e, Mapping):
            raise _fail(
                source, where, f"must be a mapping like {{name: water, value: 1}}; got {e!r}"
            )
        _check_keys(e, CLASS_KEYS, SUPERVISELY_CLASS_KEYS, source, where)
        name, no_class = _name(e, source, where)
        names.append(name)
        unlabeled.append(no_class)
        v = e.get("value")
        values.append(None if v is None else _int(v, source, f"{where}.value"))
        c = e.get("color")
        if c is None and "color" in e:
            raise _fail(
                source,
                f"{where}.color",
                "is empty; in YAML quote a hex colour (color: '#3C1098'): an unquoted # "
                "starts a comment",
            )
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
            "every class a 'color' (colour-coded masks: [r, g, b] or '#RRGGBB'); the class "
            "file mixes both or gives neither",
        )
    codes: list[Any] = values if encoding == "value" else colors
    ignore = _ignore(data.get("ignore"), encoding, source)
    ignore += [c for c, u in zip(codes, unlabeled) if u and c not in ignore]
    keep = [i for i, u in enumerate(unlabeled) if not u]
    if not keep:
        raise _fail(
            source,
            "classes",
            "holds only 'Unlabeled' classes, which mean no class; list the land-cover classes",
        )
    threshold = data.get("threshold")
    if threshold is not None:
        threshold = _int(threshold, source, "threshold", 1, 255)
    ignore_index = _int(data.get("ignore_index", 255), source, "ignore_index", 0, 255)
    return {
        "names": tuple(names[i] for i in keep),
        "values": tuple(int(values[i]) for i in keep) if encoding == "value" else None,  # type: ignore[arg-type]
        "colors": tuple(colors[i] for i in keep) if all(has_color) else (),
        "encoding": encoding,
        "ignore_value": None if not ignore else ignore[0] if len(ignore) == 1 else tuple(ignore),
        "ignore_index": ignore_index,
        "threshold": threshold,
    }


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
