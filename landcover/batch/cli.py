"""``landcover batch MANIFEST``: map many regions and scenes on Dask (``--help``).

Exit status: 0 when every scene is mapped (or was already complete), 1 when a scene or an
adaptation failed (the report lists them), 2 for a bad manifest or bad options.
"""

from __future__ import annotations

import argparse
import json
import sys

from landcover.batch.errors import ManifestError
from landcover.batch.manifest import load_manifest


def build_parser() -> argparse.ArgumentParser:
    """The command's argument parser."""
    p = argparse.ArgumentParser(
        prog="landcover batch",
        description="Adapt per region and map every scene of a YAML manifest on Dask: a local "
        "cluster sized to this machine, or an existing cluster (--scheduler). Reruns skip "
        "scenes whose outputs are complete and valid; failures are retried, then reported.",
    )
    p.add_argument("manifest", help="YAML manifest (see docs/batch.md)")
    p.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="address of a running dask.distributed scheduler (tcp://host:8786); default: "
        "a local cluster",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="local cluster: worker processes (default: CPU cores / --threads)",
    )
    p.add_argument(
        "--threads", type=int, default=1, help="local cluster: threads per worker (default 1)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    return p  # fmt: skip


def main(argv: list[str]) -> int:
    """Run the command; returns the exit status."""
    args = build_parser().parse_args(argv)
    for name in ("workers", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            print(f"landcover batch: error: --{name} must be at least 1; got {value}",
                  file=sys.stderr)  # fmt: skip
            return 2
    try:
        manifest = load_manifest(args.manifest)
    except ManifestError as err:
        print(f"landcover batch: error: {err}", file=sys.stderr)
        return 2
    from distributed import Client

    from landcover.batch.engine import local_cluster, print_dashboard, run_batch

    cluster = None
    try:
        if args.scheduler:
            try:
                client = Client(args.scheduler, timeout=30)
            except OSError as err:
                print(f"landcover batch: error: cannot reach the scheduler {args.scheduler} "
                      f"({err}); check the address and that it runs", file=sys.stderr)  # fmt: skip
                return 2
        else:
            cluster = local_cluster(args.workers, args.threads)
            client = Client(cluster)
        with client:
            print_dashboard(client)
            report = run_batch(manifest, client, manifest_path=args.manifest,
                               progress=not args.quiet)  # fmt: skip
    except ManifestError as err:
        print(f"landcover batch: error: {err}", file=sys.stderr)
        return 2
    finally:
        if cluster is not None:
            cluster.close()
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        t = report["totals"]
        print(f"mapped {t['mapped']}, skipped {t['skipped']} (complete and valid), failed "
              f"{t['failed']} in {report['wall_seconds']:.1f} s")  # fmt: skip
        for f in report["failures"]:
            print(f"FAILED {f['region']}/{f['scene']}: {f['error']}")
        print(f"report: {', '.join(report['files'])}")
    return 0 if report["ok"] else 1
