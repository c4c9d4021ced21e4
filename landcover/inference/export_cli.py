"""``landcover export RUN -o model.bundle``: a training run (or checkpoint) as a model bundle.

``landcover export SOURCE --onnx -o model.onnx``: a bundle (base or adapted; or a run) as an
ONNX model for QGIS Deepness and other ONNX runtimes, carrying Deepness' metadata
(:mod:`landcover.inference.onnx_export`).

``RUN`` is a run folder (``trainer.default_root_dir`` of ``landcover train``, holding
``checkpoints/``), a ``checkpoints/`` folder or a ``.ckpt`` file. The checkpoint carries
the module's hyper-parameters (learner, network) and the data description (bands,
normalisation, class scheme, tile size) that the data module recorded, so the bundle is
self-describing. Checkpoints are Lightning's own files, written by this project; loading
them uses ``weights_only=False`` only for that reason — user-supplied files go through
:meth:`ModelBundle.load`, which never unpickles.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from landcover.inference.bundle import ModelBundle
from landcover.inference.errors import BundleError

#: Which checkpoint of a run folder to export.
CHOICES = ("best", "last")


def find_checkpoint(run: str | Path, which: str = "best") -> Path:
    """The checkpoint file of a run.

    Args:
        run: Run folder, its ``checkpoints`` folder, or a ``.ckpt`` file.
        which: ``"best"`` (by validation mIoU after adaptation; falls back to the last when
            the run kept no best) or ``"last"``.

    Returns:
        Path of the checkpoint.

    Raises:
        FileNotFoundError: Nothing to export (the message says what was looked for).
    """
    if which not in CHOICES:
        raise ValueError(f"which must be one of {list(CHOICES)}; got {which!r}")
    path = Path(run)
    if path.is_file():
        return path
    folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{run}: no such run folder or checkpoint; give the run's default_root_dir "
            "(with checkpoints/) or a .ckpt file"
        )
    best = sorted(folder.glob("best-*.ckpt"), key=lambda p: p.stat().st_mtime)
    if which == "best" and best:
        return best[-1]
    last = folder / "last.ckpt"
    if last.is_file():
        return last
    any_ckpt = sorted(folder.glob("*.ckpt"), key=lambda p: p.stat().st_mtime)
    if any_ckpt:
        return any_ckpt[-1]
    raise FileNotFoundError(
        f"{folder}: no checkpoint (*.ckpt) found; train first (landcover train ...) or give "
        "the path of a .ckpt file"
    )


def _progress(path: Path) -> tuple[int | None, float | None]:
    """``(global_step, best monitored score)`` recorded in a checkpoint (``None``: unknown)."""
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception:  # load_module says what is wrong with the file
        return None, None
    score = None
    for key, state in (ckpt.get("callbacks") or {}).items():
        if "Checkpoint" in str(key) and isinstance(state, dict):
            best = state.get("best_model_score")
            score = None if best is None else float(best)
    step = ckpt.get("global_step")
    return (None if step is None else int(step)), score


def checkpoint_choice(run: str | Path, ckpt: Path, which: str) -> str:
    """Which checkpoint an export took and why, in one sentence (printed and stored)."""
    step, score = _progress(ckpt)
    at = f"step {step}" if step is not None else "an unknown step"
    if Path(run).is_file():
        return f"took {ckpt.name} ({at}), the checkpoint given"
    last = ckpt.with_name("last.ckpt")
    last_step = _progress(last)[0] if last.is_file() and last != ckpt else step
    of = f" of {last_step}" if last_step is not None else ""
    if ckpt.name.startswith("best-"):
        val = f" ({score:.4f})" if score is not None else ""
        return (f"took {ckpt.name}: the best validation mIoU after adaptation{val}, at {at}"
                f"{of}; --checkpoint last takes the weights at the end of training")  # fmt: skip
    why = "as asked (--checkpoint last)" if which == "last" else "the run kept no best"
    return f"took {ckpt.name} ({at}{of}): the last checkpoint, {why}"


def load_module(checkpoint: str | Path) -> Any:
    """The :class:`~landcover.training.module.MetaLearningModule` of a checkpoint, on CPU."""
    from landcover.training.module import MetaLearningModule

    try:
        return MetaLearningModule.load_from_checkpoint(
            str(checkpoint), map_location="cpu", weights_only=False
        )
    except Exception as err:  # unpickling raises many types; say what the file is not
        raise ValueError(
            f"{checkpoint}: not a checkpoint of `landcover train` ({type(err).__name__}: "
            f"{err}); give the run folder (with checkpoints/) or one of its .ckpt files"
        ) from None


def bundle_from_module(
    module: Any,
    *,
    inner_steps: int | None = None,
    info: dict[str, Any] | None = None,
    use_eval_steps: bool = False,
) -> ModelBundle:
    """Describe a trained module (learner + recorded data description) as a bundle.

    The bundle's default adaptation steps are the learner's *trained* step count (what its
    learned per-step rates and BatchNorm entries were meta-trained for), unless
    ``inner_steps`` is given, or ``use_eval_steps`` asks for the run's ``eval_steps``.
    """
    meta = getattr(module, "data_meta", {}) or {}
    missing = [k for k in ("band_names", "normalization", "classes") if k not in meta]
    if missing:
        raise BundleError(
            f"the run records no {missing}; it was trained without the region data module. "
            "Train with `landcover train` (or pass the data description) to export it"
        )
    norm = meta["normalization"]
    trained = int(getattr(module.learner, "default_steps", 0) or 0)
    steps = inner_steps
    if steps is None and use_eval_steps:
        steps = module.hparams.get("eval_steps")
    if steps is None and trained > 0:
        steps = trained
    return ModelBundle.from_learner(
        module.learner,
        bands=list(meta["band_names"]),
        mean=list(norm["mean"]),
        std=list(norm["std"]),
        classes=meta["classes"],
        tile_size=int(meta.get("tile_size") or 128),
        inner_steps=steps,
        info={"dataset": meta.get("dataset"), "regions": meta.get("regions"), **(info or {})},
    )


def export_run(
    run: str | Path,
    out: str | Path,
    *,
    which: str = "best",
    inner_steps: int | None = None,
    use_eval_steps: bool = False,
) -> Path:
    """Export a run's checkpoint as a model bundle at ``out`` (written atomically).

    The bundle's ``info`` records the checkpoint and why it was taken
    (:func:`checkpoint_choice`, also printed by ``landcover export``).
    """
    ckpt = find_checkpoint(run, which)
    module = load_module(ckpt)
    info = {"checkpoint": ckpt.name, "checkpoint_choice": checkpoint_choice(run, ckpt, which)}
    bundle = bundle_from_module(
        module, inner_steps=inner_steps, info=info, use_eval_steps=use_eval_steps
    )
    return bundle.save(out)


def _is_bundle(path: Path) -> bool:
    # a file that is not a Lightning checkpoint is read as a bundle (whose loader says
    # clearly what is wrong with a file that is neither)
    return path.is_file() and path.suffix != ".ckpt"


def export_onnx_cli(args: argparse.Namespace) -> int:
    """``--onnx``: a bundle (or a run, exported to a bundle in memory) as ONNX."""
    from landcover.inference.onnx_export import export_onnx, read_metadata

    source = Path(args.run)
    if _is_bundle(source):
        bundle = ModelBundle.load(source)
    else:
        ckpt = find_checkpoint(source, args.checkpoint)
        choice = checkpoint_choice(source, ckpt, args.checkpoint)
        print(f"landcover export: {choice}")
        bundle = bundle_from_module(load_module(ckpt), inner_steps=args.steps,
                                    info={"checkpoint": ckpt.name,
                                          "checkpoint_choice": choice})  # fmt: skip
    path = export_onnx(bundle, args.output, pixel_size_m=args.pixel_size,
                       tile_size=args.tile_size, overlap_percent=args.tiles_overlap)  # fmt: skip
    meta = read_metadata(path)
    res = meta.get("resolution")
    print(f"wrote {path}: {bundle.kind} {bundle.learner['name']} on {bundle.model['arch']}, "
          f"{len(bundle.bands)} bands, {len(bundle.class_names)} classes, tile "
          f"{meta['tile_size']} px, overlap {meta['tiles_overlap']} %, resolution "
          f"{'unset (give --pixel-size)' if res is None else f'{res:g} cm/px'}")  # fmt: skip
    return 0


def main(argv: list[str]) -> int:
    """Entry point of ``landcover export``."""
    parser = argparse.ArgumentParser(
        prog="landcover export",
        description="Export a training run as a model bundle, or a bundle as ONNX (--onnx).",
    )
    parser.add_argument(
        "run", help="run folder (default_root_dir), checkpoints/ or a .ckpt; with --onnx "
        "also a bundle (base or adapted)"
    )  # fmt: skip
    parser.add_argument("-o", "--output", required=True, help="bundle (or .onnx) file to write")
    parser.add_argument(
        "--onnx", action="store_true", help="write an ONNX model with QGIS Deepness metadata"
    )
    parser.add_argument("--pixel-size", type=float, default=None, metavar="M",
                        help="--onnx: ground size of a pixel in metres (Deepness' resolution; "
                        "default: recorded in the bundle, if any)")  # fmt: skip
    parser.add_argument(
        "--tile-size",
        type=int,
        default=None,
        metavar="PX",
        help="--onnx: square tile size (default: predict's window, max(bundle tile size, "
        "256 x the network's stride))",
    )
    parser.add_argument(
        "--tiles-overlap",
        type=int,
        default=25,
        metavar="PCT",
        help="--onnx: Deepness tile overlap in percent (default 25)",
    )
    parser.add_argument(
        "--checkpoint",
        choices=CHOICES,
        default="best",
        help="best validation checkpoint (default) or the last one",
    )
    steps = parser.add_mutually_exclusive_group()
    steps.add_argument(
        "--steps",
        type=int,
        default=None,
        help="default adaptation steps (default: the learner's trained step count)",
    )
    steps.add_argument(
        "--eval-steps",
        action="store_true",
        help="use the run's model.eval_steps as the default adaptation steps",
    )
    args = parser.parse_args(argv)
    if args.pixel_size is not None and not args.pixel_size > 0:
        print(f"landcover export: --pixel-size must be > 0 metres; got {args.pixel_size}",
              file=sys.stderr)  # fmt: skip
        return 2
    if args.onnx:
        try:
            return export_onnx_cli(args)
        except (OSError, BundleError, ValueError) as err:
            print(f"landcover export: {err}", file=sys.stderr)
            return 2
    if _is_bundle(Path(args.run)):
        try:
            ModelBundle.load(args.run)
        except BundleError:
            pass  # not a bundle: read as a checkpoint below, which says what it is not
        else:
            print(f"landcover export: {args.run} is already a model bundle; "
                  f"`landcover export {args.run} --onnx -o model.onnx` exports it as ONNX",
                  file=sys.stderr)  # fmt: skip
            return 2
    try:
        path = export_run(
            args.run, args.output, which=args.checkpoint, inner_steps=args.steps,
            use_eval_steps=args.eval_steps,
        )  # fmt: skip
    except (OSError, BundleError, ValueError) as err:
        print(f"landcover export: {err}", file=sys.stderr)
        return 2
    bundle = ModelBundle.load(path)
    print(f"landcover export: {bundle.info.get('checkpoint_choice')}")
    print(
        f"wrote {path}: {bundle.learner['name']} on {bundle.model['arch']}, "
        f"{len(bundle.bands)} bands, {len(bundle.class_names)} classes, "
        f"{bundle.inner_steps if bundle.inner_steps is not None else 'no'} adaptation steps"
    )
    return 0
