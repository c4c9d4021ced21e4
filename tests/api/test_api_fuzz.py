"""Schemathesis against a real server, with strategies that reach the core.

The hooks of ``st_hooks.py`` make most generated adaptation bodies a valid tile set and
most predict bodies a valid raster aimed at a finished adaptation, so the fuzzer drives
real adaptations (202, then jobs) and real predictions (200) besides the malformed
requests it makes up itself. The check is ``not_a_server_error``: no 5xx, ever.

CI-sized by default (``LANDCOVER_FUZZ_EXAMPLES``, default 15 examples per operation). The
long run::

    LANDCOVER_FUZZ_EXAMPLES=1300 flock /tmp/landcover-cpu.lock \\
        python -m pytest tests/api/test_api_fuzz.py -s

fuzzes the two operations that reach the core (adaptations and predict), needs at least
1,000 202s on ``POST /v1/adaptations`` and 1,000 200s on predict, and prints the counts
per operation and status.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import httpx
import pytest
from apihelpers import HEADERS, KEY_A, pair_files, served, wait_status

HTTP_METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}

pytestmark = pytest.mark.slow
HERE = Path(__file__).resolve().parent
EXAMPLES = int(os.environ.get("LANDCOVER_FUZZ_EXAMPLES", "15"))
LONG = EXAMPLES >= 1000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    env = {
        "LANDCOVER_MAX_ACTIVE_JOBS_PER_KEY": "100000",
        "LANDCOVER_MAX_ACTIVE_JOBS": "100000",
        "LANDCOVER_JOB_WORKERS": "2",
        "LANDCOVER_POLL_S": "0.1",
        "LANDCOVER_RATE_LIMIT": "100000/second",
        "LANDCOVER_PREDICT_CONCURRENCY": "2",
    }
    with served(tmp_path_factory.mktemp("fuzzed"), env) as base:
        with httpx.Client(base_url=base, timeout=60) as c:
            aid = c.post("/v1/adaptations", headers=HEADERS, data={"model": "tiny"},
                         files=pair_files(2)).json()["id"]  # fmt: skip
            assert wait_status(c, aid, interval=0.1)["status"] == "done"
        yield base, aid


def test_schemathesis_reaches_the_core_without_server_errors(
    server: tuple[str, str], tmp_path: Path
) -> None:
    base, aid = server
    cmd = [
        str(Path(sys.executable).with_name("schemathesis")), "run", f"{base}/openapi.json",
        "--checks", "not_a_server_error", "--max-examples", str(EXAMPLES), "--seed", "1",
        "--phases", "examples,coverage,fuzzing", "--workers", "2",
        "--request-timeout", "120", "-H", f"X-API-Key: {KEY_A}",
        "--suppress-health-check", "all",
        "--report", "junit", "--report-junit-path", str(tmp_path / "junit.xml"),
    ]  # fmt: skip
    if LONG:  # the long run spends its time where the core is reached
        cmd += ["--include-operation-id", "create_adaptation", "--include-operation-id", "predict"]
    counts_file = tmp_path / "counts.json"
    env = {**os.environ, "SCHEMATHESIS_HOOKS": str(HERE / "st_hooks.py"), "NO_COLOR": "1",
           "LANDCOVER_FUZZ_ADAPTATION": aid, "LANDCOVER_FUZZ_COUNTS": str(counts_file)}  # fmt: skip
    timeout = 3600 if LONG else 300
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                         cwd=tmp_path)  # fmt: skip
    tail = (out.stdout + out.stderr)[-4000:]
    assert out.returncode == 0, tail
    suites = ElementTree.parse(tmp_path / "junit.xml").getroot()
    suite = suites if suites.tag == "testsuite" else suites[0]
    schema = httpx.get(f"{base}/openapi.json").json()
    operations = sum(
        1 for item in schema["paths"].values() for method in item if method in HTTP_METHODS
    )
    assert int(suite.get("tests", "0")) == (2 if LONG else operations), tail  # every one ran
    assert int(suite.get("failures", "0")) == int(suite.get("errors", "0")) == 0, tail
    counts = json.loads(counts_file.read_text())
    print(json.dumps(counts, indent=2))
    assert not [k for k, n in counts.items() if k.endswith(tuple(f" 5{d:02d}" for d in range(100)))]
    # CI-sized: how many valid sets the fuzz phase draws varies run to run (3 to 24 seen), so
    # the quick run only shows the core is reached; the long run carries the 1,000 goal.
    need = 1000 if LONG else 1
    accepted = counts.get("POST /v1/adaptations 202", 0)
    predicted = counts.get("POST /v1/adaptations/{adaptation_id}/predict 200", 0)
    assert accepted >= need and predicted >= need, (counts, tail)
