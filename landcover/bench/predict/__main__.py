"""``python -m landcover.bench.predict --child SPEC``: one memory measurement in a fresh process.

Run by :func:`landcover.bench.predict.scene.run_child`; prints the JSON result of
:func:`landcover.bench.predict._child` for the JSON ``SPEC`` as its last line
(``--vector-child SPEC``: :func:`landcover.bench.predict.vector_cost.child`).
"""

from __future__ import annotations

import json
import sys

from landcover.bench.predict import _child

if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(_child(json.loads(sys.argv[2]))))
    elif len(sys.argv) == 3 and sys.argv[1] == "--vector-child":
        from landcover.bench.predict.vector_cost import child

        print(json.dumps(child(json.loads(sys.argv[2]))))
