"""The ``landcover`` command.

Each sub-command lives with the code it drives and is imported only when it runs, so
``landcover --help`` stays fast and one area's optional dependencies never slow another.
A command module exposes ``main(argv: list[str]) -> int``.
"""

from __future__ import annotations

import importlib
import sys

#: command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("landcover.evaluation.demo", "synthesize regions, meta-train, evaluate, report"),
    "train": ("landcover.training.cli", "meta-train with a LightningCLI YAML config"),
    "export": ("landcover.inference.export_cli", "export a training run as a model bundle"),
    "adapt": ("landcover.inference.adapt_cli", "adapt a bundle to a folder of labeled tiles"),
    "predict": ("landcover.inference.predict_cli", "segment a raster with a bundle"),
    "batch": ("landcover.batch.cli", "map many regions and scenes from a manifest, on Dask"),
    "evaluate": ("landcover.evaluation.evaluate_cli", "few-shot evaluation on held-out regions"),
    "data": ("landcover.geo.cli", "synthesize or inspect datasets (data synth|inspect)"),
    "bench": ("landcover.bench.cli", "benchmarks (bench sinusoid|meta-step|omniglot|...)"),
    "serve": ("api.cli", "run the REST service under uvicorn"),
}


def _usage() -> str:
    width = max(len(c) for c in COMMANDS)
    lines = ["usage: landcover COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "Run 'landcover COMMAND --help' for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Dispatch to a sub-command.

    Args:
        argv: Arguments without the program name; defaults to ``sys.argv[1:]``.

    Returns:
        The process exit status.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0
    if args[0] == "--version":
        from landcover import __version__

        print(__version__)
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"landcover: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
