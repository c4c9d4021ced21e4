"""Completion records: how a rerun knows an output is complete and valid, not just present.

When a scene's outputs are all in place, the worker writes a small JSON *record* beside
them (atomically, last): the scene's source (path, size, modification time), the digest
of the bundle that mapped it, the prediction options, and each output's size and SHA-256.
A rerun skips a scene only when its record exists, names the same source, bundle and
options, and every output still has its recorded size and digest and the class map opens
with the recorded shape. Anything else (a file killed half-way, edited, truncated or
removed, another bundle, other options) maps the scene again. Adapted bundles of regions
have the same kind of record (:func:`digest_folder` of the support tiles).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from landcover.atomic import atomic_write_text

#: Version of the record layout; a record of another version is not trusted.
RECORD_VERSION = 1


def write_json(path: str | Path, payload: Any) -> Path:
    """Write ``payload`` as indented JSON, atomically."""
    return atomic_write_text(path, json.dumps(payload, indent=2, default=str) + "\n")


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def digest_folder(folder: str | Path) -> str:
    """SHA-256 over every file of a folder: relative paths and contents, in sorted order."""
    root = Path(folder)
    h = hashlib.sha256()
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        h.update(str(p.relative_to(root)).encode() + b"\0")
        h.update(file_digest(p).encode())
    return h.hexdigest()


def source_stamp(path: str | Path) -> dict[str, Any]:
    """What identifies an input file's version: path, size and modification time."""
    st = Path(path).stat()
    return {"path": str(Path(path).resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def output_stamps(paths: list[Path]) -> dict[str, dict[str, Any]]:
    """``{path: {size, sha256}}`` of finished outputs."""
    return {str(p): {"size": p.stat().st_size, "sha256": file_digest(p)} for p in paths}


def read_record(path: str | Path) -> dict[str, Any] | None:
    """The record at ``path``, or ``None`` when missing, unreadable or of another version."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("version") != RECORD_VERSION:
        return None
    return record


def outputs_intact(record: dict[str, Any]) -> bool:
    """Whether every output of a record still has its recorded size and SHA-256."""
    outputs = record.get("outputs")
    if not isinstance(outputs, dict) or not outputs:
        return False
    for path, stamp in outputs.items():
        p = Path(path)
        try:
            if p.stat().st_size != stamp["size"] or file_digest(p) != stamp["sha256"]:
                return False
        except (OSError, KeyError, TypeError):
            return False
    return True


def scene_complete(
    record_path: Path, *, source: dict[str, Any], bundle_digest: str, options: dict[str, Any]
) -> dict[str, Any] | None:
    """The scene's record when its outputs are complete and valid for this run, else ``None``.

    Checked: the record names the same source version, bundle and options; every output
    has its recorded size and SHA-256; the class map opens with the recorded size.
    """
    record = read_record(record_path)
    if record is None or record.get("source") != source:
        return None
    if record.get("bundle_sha256") != bundle_digest or record.get("options") != options:
        return None
    if not outputs_intact(record):
        return None
    try:
        import rasterio

        with rasterio.open(record["classes"]) as ds:
            if (ds.width, ds.height) != (record["width"], record["height"]):
                return None
    except Exception:  # any GDAL failure means the map is not valid
        return None
    return record
