"""Schemathesis hooks that make the fuzzer reach the core: valid tile sets and rasters.

Loaded by the schemathesis run of ``test_api_fuzz.py`` through ``SCHEMATHESIS_HOOKS``.
Without them the fuzzer never builds a readable GeoTIFF, so every adaptation and
prediction it sends stops at validation. With them, most generated bodies of
``POST /v1/adaptations`` are a zip in the users' folder format holding 1–4 labeled tiles
of random size, content and labels (masks in the model's values, sometimes with a class
file naming a subset of the model's classes), and most bodies of ``POST .../predict`` are
a GeoTIFF of random size and content aimed at a finished adaptation
(``LANDCOVER_FUZZ_ADAPTATION``). The rest stay as schemathesis generated them.
``after_call`` counts the status codes per operation into ``LANDCOVER_FUZZ_COUNTS``.
"""

from __future__ import annotations

import atexit
import io
import json
import os
import sys
import threading
import uuid
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import schemathesis
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))
from apihelpers import SCHEME, png_bytes, tiff_bytes

ADAPT = ("POST", "/v1/adaptations")
PREDICT = ("POST", "/v1/adaptations/{adaptation_id}/predict")
BANDS = 3

_counts: Counter[str] = Counter()
_lock = threading.Lock()


def _op(context: schemathesis.HookContext) -> tuple[str, str] | None:
    op = context.operation
    return None if op is None else (op.method.upper(), op.path)


@st.composite
def tile_set(draw: st.DrawFn) -> bytes:
    """A zip of 1–4 labeled tiles (images/ + masks/), maybe with a class file."""
    n = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    named = draw(st.booleans())
    names = list(SCHEME.names)
    if named:  # a class file naming a subset of the model's classes, in any order
        names = draw(st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(n):
            h, w = draw(st.integers(8, 64)), draw(st.integers(8, 64))
            labels = rng.integers(0, len(names), (h, w))
            labels[rng.random((h, w)) < draw(st.floats(0, 0.5))] = -1  # unlabeled pixels
            labels.flat[0] = 0  # at least one labeled pixel
            if named:
                mask = np.where(labels >= 0, labels, 255).astype(np.uint8)
            else:
                values = np.asarray(SCHEME.values)
                mask = np.where(labels >= 0, values[np.maximum(labels, 0)], 0).astype(np.uint8)
            dtype = draw(st.sampled_from(["uint8", "uint16", "float32"]))
            image = rng.uniform(0, 200, (BANDS, h, w)) + 40 * np.maximum(labels, 0)
            zf.writestr(f"region/images/t{i}.tif", tiff_bytes(image.astype(dtype)))
            zf.writestr(f"region/masks/t{i}.png", png_bytes(mask))
        if named:
            rows = "".join(f"  - {{name: {n}, value: {k}}}\n" for k, n in enumerate(names))
            zf.writestr("region/classes.yaml", f"classes:\n{rows}ignore: 255\n")
    return buf.getvalue()


@st.composite
def raster(draw: st.DrawFn) -> bytes:
    """A GeoTIFF of the model's bands, random size, type, content and nodata."""
    h, w = draw(st.integers(1, 96)), draw(st.integers(1, 96))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dtype = draw(st.sampled_from(["uint8", "uint16", "int16", "float32"]))
    image = rng.uniform(0, 250, (BANDS, h, w)).astype(dtype)
    nodata = draw(st.sampled_from([None, 0]))
    return tiff_bytes(image, nodata=nodata)


@schemathesis.hook
def flatmap_body(context: schemathesis.HookContext, body: object) -> st.SearchStrategy:
    """Replace most adaptation and predict bodies by valid ones (keep some fuzzed)."""
    op = _op(context)
    if op == ADAPT:
        valid = st.builds(
            lambda z, steps: {"model": "tiny", "archive": [z], **steps},
            tile_set(),
            st.one_of(st.just({}), st.integers(1, 5).map(lambda k: {"steps": k})),
        )
    elif op == PREDICT:
        valid = raster().map(lambda r: {"raster": r})
    else:
        return st.just(body)
    return st.integers(0, 9).flatmap(lambda k: valid if k < 8 else st.just(body))


@schemathesis.hook
def flatmap_path_parameters(
    context: schemathesis.HookContext, path_parameters: dict
) -> st.SearchStrategy:
    """Aim most predictions at a finished adaptation."""
    done = os.environ.get("LANDCOVER_FUZZ_ADAPTATION")
    if _op(context) != PREDICT or not done:
        return st.just(path_parameters)
    return st.integers(0, 9).map(
        lambda k: {**(path_parameters or {}), "adaptation_id": done} if k < 8 else path_parameters
    )


@schemathesis.hook
def before_call(context: schemathesis.HookContext, case: object, kwargs: dict) -> None:
    """Keep the predict target alive: the fuzzer learns ids from responses and deletes them."""
    done = os.environ.get("LANDCOVER_FUZZ_ADAPTATION")
    params = getattr(case, "path_parameters", None)
    op = _op(context)
    if done and op and op[0] == "DELETE" and params and params.get("adaptation_id") == done:
        params["adaptation_id"] = "0" * 32
    headers = getattr(case, "headers", None)
    if op == ADAPT and headers:  # a fuzzed key reused with another body is a (correct) 422:
        for name in [h for h in headers if h.lower() == "idempotency-key"]:  # keep bodies valid
            headers[name] = uuid.uuid4().hex


@schemathesis.hook
def after_call(context: schemathesis.HookContext, case: object, response: object) -> None:
    """Count status codes per operation."""
    op = _op(context)
    label = f"{op[0]} {op[1]}" if op else "?"
    with _lock:
        _counts[f"{label} {response.status_code}"] += 1  # type: ignore[attr-defined]


@atexit.register
def _write_counts() -> None:
    target = os.environ.get("LANDCOVER_FUZZ_COUNTS")
    if target:
        with _lock:
            Path(target).write_text(json.dumps(dict(sorted(_counts.items())), indent=2))
