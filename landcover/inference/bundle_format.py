"""On-disk format of model bundles: header validation and version compatibility.

A bundle is a safetensors file (8-byte little-endian header length, a JSON header, raw
tensor bytes) whose header metadata holds the landcover JSON under ``"landcover"``.
:func:`read_header` reads and checks that JSON without touching the tensors and never
unpickles anything: files that look like pickles or zip archives (PyTorch ``.pt`` /
``.ckpt``) are refused with a message saying how to export a bundle instead.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

from landcover import __version__
from landcover.inference.errors import BundleError

#: Version of the bundle layout; bumped when the layout changes incompatibly.
FORMAT_VERSION = 1
FORMAT_NAME = "landcover-bundle"
KINDS = ("meta", "adapted")
_REQUIRED = (
    "format", "format_version", "landcover_version", "kind", "model", "learner",
    "bands", "normalization", "classes", "ignore_index", "tile_size",
)  # fmt: skip


def _major_minor(version: str) -> tuple[int, int]:
    parts = [*version.split("+")[0].split("."), "0", "0"][:2]
    try:
        return int(parts[0]), int(parts[1])
    except ValueError:
        raise BundleError(f"unreadable landcover version {version!r} in the bundle") from None


def compatible(bundle_version: str, running: str = __version__) -> bool:
    """Whether a bundle written by ``bundle_version`` loads in ``running`` (semver).

    Same major version; while the major version is 0, the same minor version too.
    """
    (bm, bn), (rm, rn) = _major_minor(bundle_version), _major_minor(running)
    return bm == rm and (rm > 0 or bn == rn)


def read_header(path: str | Path) -> dict[str, Any]:
    """Read and validate a bundle's JSON metadata without reading its tensors."""
    path = Path(path)
    if not path.is_file():
        raise BundleError(f"{path}: no such bundle file")
    with path.open("rb") as fh:
        head = fh.read(9)
        size = os.path.getsize(path)
        n = struct.unpack("<Q", head[:8])[0] if len(head) == 9 else 0
        if not (2 <= n <= min(size - 8, 100_000_000) and head[8:9] == b"{"):
            if head[:2] == b"PK" or head[:1] == b"\x80":
                raise BundleError(
                    f"{path}: this is a pickled PyTorch checkpoint (zip/pickle), not a "
                    "landcover bundle; landcover never unpickles files. Export the run with "
                    "`landcover export RUN -o model.bundle`"
                )
            raise BundleError(f"{path}: not a landcover bundle (no safetensors header)")
        fh.seek(8)
        try:
            meta = json.loads(fh.read(n)).get("__metadata__") or {}
            header = json.loads(meta["landcover"])
            if not isinstance(header, dict):
                raise TypeError("landcover metadata is not a JSON object")
        except (ValueError, KeyError, AttributeError, TypeError):
            raise BundleError(
                f"{path}: a safetensors file without landcover metadata; export bundles with "
                "`landcover export` or ModelBundle.save"
            ) from None
    if header.get("format") != FORMAT_NAME:
        raise BundleError(f"{path}: not a landcover bundle (format {header.get('format')!r})")
    missing = [k for k in _REQUIRED if k not in header]
    if missing:
        raise BundleError(f"{path}: the bundle lacks {missing}; re-export it")
    if int(header["format_version"]) > FORMAT_VERSION:
        raise BundleError(
            f"{path}: bundle format {header['format_version']} is newer than this landcover "
            f"reads ({FORMAT_VERSION}); upgrade landcover (running {__version__})"
        )
    if not compatible(str(header["landcover_version"])):
        raise BundleError(
            f"{path}: written by landcover {header['landcover_version']}, incompatible with "
            f"the running {__version__}; use landcover {header['landcover_version']} or "
            "re-export the bundle with this version"
        )
    return header
