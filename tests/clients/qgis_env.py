"""Where the real GIS clients are: QGIS's Python bindings and the Deepness plugin.

Both run in a child process (:func:`run_in_qgis`), so that Qt and QGIS never load into
the test process. The child is this interpreter with QGIS's Python path appended (after
the venv's, so the venv's numpy and onnxruntime are the ones Deepness imports).

- QGIS: Debian's ``python3-qgis`` (``apt-get install python3-qgis``; QGIS 3.22 on
  Debian 12), found in ``LANDCOVER_QGIS_PYTHONPATH`` (default
  ``/usr/lib/python3/dist-packages``).
- Deepness (Aszkowski et al. 2023, not on PyPI): the ``src`` folder of a checkout of
  https://github.com/PUTvision/qgis-plugin-deepness, found in ``LANDCOVER_DEEPNESS``
  (default ``.cache/deepness/src`` in the repository, else
  ``~/.cache/landcover/deepness/src``; tag 0.6.5).

Tests that need them skip, naming what is missing and how to get it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
QGIS_PATH = Path(os.environ.get("LANDCOVER_QGIS_PYTHONPATH", "/usr/lib/python3/dist-packages"))
#: Where Deepness's ``src`` folder is looked for: ``LANDCOVER_DEEPNESS``, else the
#: repository's ``.cache/deepness/src``, else the machine's ``~/.cache/landcover/deepness/src``
#: (a copy kept outside any checkout, so fresh clones on the machine find it too).
_CANDIDATES = [REPO / ".cache" / "deepness" / "src",
               Path.home() / ".cache" / "landcover" / "deepness" / "src"]  # fmt: skip
DEEPNESS_SRC = Path(
    os.environ.get(
        "LANDCOVER_DEEPNESS",
        next((c for c in _CANDIDATES if (c / "deepness").is_dir()), _CANDIDATES[0]),
    )
)


def qgis_missing() -> str | None:
    """Why QGIS cannot be used here, or ``None``."""
    if not (QGIS_PATH / "qgis" / "core").is_dir():
        return (f"QGIS's Python bindings are not in {QGIS_PATH} (apt-get install python3-qgis, "
                "or set LANDCOVER_QGIS_PYTHONPATH)")  # fmt: skip
    return None


def deepness_missing() -> str | None:
    """Why Deepness cannot be used here, or ``None``."""
    missing = qgis_missing()
    if missing is None and not (DEEPNESS_SRC / "deepness" / "processing").is_dir():
        missing = (
            f"the Deepness plugin is not in {DEEPNESS_SRC} nor ~/.cache/landcover/deepness/src "
            "(it is not on PyPI: put a checkout of qgis-plugin-deepness 0.6.5 there, or set "
            "LANDCOVER_DEEPNESS to its src folder)"
        )
    return missing


def run_in_qgis(script: Path, *args: str, timeout: float = 600) -> dict:
    """Run ``script`` with QGIS (and Deepness) importable; its last stdout line is JSON.

    Returns:
        That JSON object, with the child's stderr under ``"stderr"``.
    """
    env = {
        **os.environ,
        "QT_QPA_PLATFORM": "offscreen",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "LANDCOVER_QGIS_PYTHONPATH": str(QGIS_PATH),
        "LANDCOVER_DEEPNESS": str(DEEPNESS_SRC),
    }
    proc = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True,
                          env=env, timeout=timeout, check=False)  # fmt: skip
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise AssertionError(f"{script.name} failed ({proc.returncode}):\n{proc.stdout[-3000:]}"
                             f"\n{proc.stderr[-3000:]}")  # fmt: skip
    result = json.loads(lines[-1])
    result["stderr"] = proc.stderr  # GDAL's warnings ("Warning 1: ...") land here
    return result
