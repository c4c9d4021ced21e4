"""Checks of a data module's reader options (``data.options`` of a training config).

``data.options`` go to the dataset's reader as keyword arguments: the generator knobs of
:class:`landcover.geo.synthetic.SynthConfig`, or the options of
:func:`landcover.geo.folder.read_regions`, :class:`landcover.geo.sen12ms.SEN12MS` and
:class:`landcover.geo.deepglobe.DeepGlobe`. A name the reader does not take (a typo, or a
synthetic knob left in a config switched to ``folder``) would otherwise end in a Python
``TypeError``; here it is a ``ValueError`` that lists the valid names.

Synthetic regions are generated into ``root`` once and read back afterwards. When ``root``
already holds regions generated with other knobs than the ones the config asks for, the
run would silently train on the old regions; that is an error that says what differs.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path
from typing import Any


def reader_option_names(dataset: str) -> set[str]:
    """Keyword options the reader of ``dataset`` accepts (``data.options``)."""
    if dataset == "synthetic":
        from landcover.geo.synthetic import SynthConfig

        return {f.name for f in dataclasses.fields(SynthConfig)}
    if dataset == "sen12ms":
        from landcover.geo.sen12ms import SEN12MS as reader
    elif dataset == "deepglobe":
        from landcover.geo.deepglobe import DeepGlobe as reader
    else:
        from landcover.geo.folder import read_regions as reader
    params = inspect.signature(reader).parameters.values()
    return {p.name for p in params if p.name != "root" and p.kind is not p.VAR_KEYWORD}


def check_reader_options(dataset: str, root: str | Path, options: dict[str, Any]) -> None:
    """Refuse options the reader does not take, and stale synthetic regions in ``root``.

    Args:
        dataset: ``"synthetic"``, ``"folder"``, ``"sen12ms"`` or ``"deepglobe"``.
        root: Dataset folder.
        options: The ``data.options`` of the config.

    Raises:
        ValueError: An unknown option name, or (synthetic) regions in ``root`` generated
            with other values of the knobs given in ``options``.
    """
    if dataset not in ("synthetic", "folder", "sen12ms", "deepglobe"):
        return  # the data module reports an unknown dataset
    valid = reader_option_names(dataset)
    unknown = sorted(set(options) - valid)
    if unknown:
        raise ValueError(
            f"data.options {unknown} are not options of the {dataset!r} dataset reader; "
            f"valid: {sorted(valid)}"
        )
    record = Path(root) / "synth.json"
    if dataset != "synthetic" or not record.is_file():
        return
    try:
        made = json.loads(record.read_text()).get("config", {})
    except (OSError, ValueError, AttributeError):
        return  # not a record this check can read: the reader reports real problems
    differ = {
        k: (made[k], v)
        for k, v in options.items()
        if k in made and json.loads(json.dumps(v)) != made[k]
    }
    if differ:
        shown = ", ".join(f"{k}: {old!r} there, {new!r} asked" for k, (old, new) in differ.items())
        raise ValueError(
            f"{root} already holds synthetic regions generated with other knobs ({shown}); "
            "set data.root to a new folder (they are generated there) or delete this one"
        )
