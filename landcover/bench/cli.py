"""``landcover bench NAME``: discovers every module of this package that defines a bench.

A bench module defines ``BENCH_NAME: str``, ``BENCH_HELP: str``,
``add_arguments(parser: argparse.ArgumentParser) -> None`` and
``run(args: argparse.Namespace) -> int``. Adding a bench needs no edit here.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from types import ModuleType

import landcover.bench as bench_pkg


def discover() -> dict[str, ModuleType]:
    """Return ``{bench name: module}`` for every bench module in ``landcover.bench``."""
    found: dict[str, ModuleType] = {}
    for info in pkgutil.iter_modules(bench_pkg.__path__):
        if info.name.startswith("_") or info.name in {"cli", "common"}:
            continue
        module = importlib.import_module(f"landcover.bench.{info.name}")
        name = getattr(module, "BENCH_NAME", None)
        if name:
            found[name] = module
    return found


def main(argv: list[str]) -> int:
    """Parse ``argv`` and run the chosen bench."""
    benches = discover()
    parser = argparse.ArgumentParser(prog="landcover bench", description="Run a benchmark.")
    sub = parser.add_subparsers(dest="bench", required=True, metavar="NAME")
    for name in sorted(benches):
        module = benches[name]
        p = sub.add_parser(name, help=module.BENCH_HELP, description=module.BENCH_HELP)
        module.add_arguments(p)
    args = parser.parse_args(argv)
    try:
        return int(benches[args.bench].run(args) or 0)
    except (ValueError, KeyError, FileNotFoundError) as err:  # bad settings or data
        text = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"landcover bench {args.bench}: error: {text}", file=sys.stderr)
        return 2
