"""Adapt a meta-learned bundle to a new region from a few labeled tiles.

This is the test-time half of meta-learning (Finn et al. 2017, MAML, section 2.2; for
land cover, Rußwurm et al. 2020, "Meta-Learning for Few-Shot Land Cover
Classification"): the learner's :meth:`~landcover.meta.protocol.Learner.adapt` runs on the
support tiles (a few gradient steps for optimization-based learners, prototypes for
ProtoNets, ...) and the resulting adapted state is stored in an *adapted* bundle that
:mod:`landcover.inference.predict` uses for whole rasters.

Support tiles are brought to the bundle's training tile size: larger tiles are cut into a
grid of ``tile_size`` crops (the last ones shifted back to the edge), smaller ones are
padded with the ignore index (masks) and the band means (images), so the learner sees what
it saw in meta-training. Crops without a labeled pixel are dropped.

Memory is bounded by a *pixel budget* (:data:`POOL_PIXELS`): when the crops of all support
tiles hold more pixels than that, a seeded random pool of crops within the budget is drawn
(:func:`crop_pool`), so five full-size 2000×2000 tiles adapt in the memory and time of 16
crops of 64 px instead of 5120 (``landcover bench adapt-memory`` measures it).

Adaptation is guarded (:mod:`landcover.inference.adapt_guard`): the number of steps is
chosen on held-out support, so the kept map is never worse on the support than no
adaptation. The result carries the report ``{"support_miou_before", "support_miou_after",
"steps_kept", "steps_tried", "held_out_tiles"}`` (:meth:`AdaptResult.report`), which the CLI
prints and the service returns as the adaptation's ``report``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from landcover.inference.adapt_guard import GuardReport, guarded_adapt, miou
from landcover.inference.bundle import ModelBundle
from landcover.inference.errors import BundleError
from landcover.inference.sliding import window_starts
from landcover.meta.protocol import AdaptedState, Learner


@dataclass
class AdaptResult:
    """Outcome of :func:`adapt_bundle`.

    Attributes:
        bundle: The adapted bundle (kind ``"adapted"``).
        miou_before: Support-set mIoU of the meta-learned model (no adaptation step).
        miou_after: Support-set mIoU after adaptation.
        seconds: Wall-clock time of the adaptation itself.
        steps: Inner steps kept (with the guard, chosen on held-out support).
        tiles: Support tiles given.
        crops: Support crops the learner adapted on (the pool, within the pixel budget).
        guard: What the guard did (``None`` when adaptation ran unguarded).
    """

    bundle: ModelBundle
    miou_before: float
    miou_after: float
    seconds: float
    steps: int | None
    tiles: int
    crops: int
    guard: GuardReport | None = None

    def report(self) -> dict[str, Any]:
        """The shared adaptation report.

        Keys: ``support_miou_before``, ``support_miou_after``, ``steps_kept``,
        ``steps_tried``, ``held_out_tiles``.
        """
        if self.guard is not None:
            return self.guard.as_dict()
        steps = int(self.steps or 0)
        return GuardReport(self.miou_before, self.miou_after, steps, steps, 0).as_dict()

    def summary(self) -> dict[str, Any]:
        """JSON-friendly summary (what the CLI prints and the API stores)."""
        return {
            "miou_before": self.miou_before,
            "miou_after": self.miou_after,
            "seconds": self.seconds,
            "steps": self.steps,
            "tiles": self.tiles,
            "crops": self.crops,
            "report": self.report(),
        }


#: Most support pixels adapted on at once (crops beyond it are left out at random).
POOL_PIXELS = 2**16


def input_pixel_budget(bundle: ModelBundle, max_pixels: int = POOL_PIXELS) -> int:
    """A crop-pool budget given in the network's pixels, as input pixels of ``bundle``.

    A model run at ``stride`` (see :mod:`landcover.models.small_unet`) computes on
    ``1/stride**2`` of its input pixels, so it gets ``stride**2`` times more input pixels.
    """
    return int(max_pixels) * int(bundle.model.get("options", {}).get("stride", 1)) ** 2


def support_crops(
    images: Sequence[Tensor], masks: Sequence[Tensor], tile_size: int, ignore_index: int
) -> tuple[Tensor, Tensor]:
    """Cut or pad raw support tiles to ``tile_size`` (see the module docstring), all crops.

    Returns:
        ``(n, C, tile_size, tile_size)`` images (``nan`` where padded) and
        ``(n, tile_size, tile_size)`` masks.
    """
    x, y, _ = crop_pool(images, masks, tile_size, ignore_index, max_pixels=None)
    return x, y


def crop_pool(
    images: Sequence[Tensor],
    masks: Sequence[Tensor],
    tile_size: int,
    ignore_index: int,
    *,
    max_pixels: int | None = POOL_PIXELS,
    seed: int = 0,
) -> tuple[Tensor, Tensor, Tensor]:
    """Labeled ``tile_size`` crops of the support tiles, at most ``max_pixels`` of them.

    Args:
        images: Raw ``(C, H, W)`` tiles (normalised or not; padding uses ``nan``, filled by
            the caller after normalisation).
        masks: ``(H, W)`` class-index masks, ``ignore_index`` for unlabeled pixels.
        tile_size: Crop size.
        ignore_index: Mask value of unlabeled pixels.
        max_pixels: Pixel budget of the pool (``None``: every crop). Over budget, a seeded
            random subset of the crops is kept, at least one per tile.
        seed: Seed of that draw.

    Returns:
        ``(n, C, tile_size, tile_size)`` images (``nan`` where padded),
        ``(n, tile_size, tile_size)`` masks and the ``(n,)`` tile index of each crop.
    """
    if len(images) == 0:
        raise BundleError("no support tiles: give at least one labeled tile")
    if len(images) != len(masks):
        raise BundleError(f"{len(images)} support images but {len(masks)} masks; give pairs")
    tiles: list[tuple[Tensor, Tensor]] = []
    windows: list[tuple[int, int, int]] = []  # (tile, row, col) of labeled crops
    for i, (img, mask) in enumerate(zip(images, masks)):
        if img.ndim != 3 or mask.shape != img.shape[-2:]:
            raise BundleError(
                f"support tile {i}: image {tuple(img.shape)} and mask {tuple(mask.shape)} "
                "do not match; images are (C, H, W) and masks (H, W) of the same size"
            )
        h, w = mask.shape
        ph, pw = max(tile_size - h, 0), max(tile_size - w, 0)
        if ph or pw:
            img = F.pad(img.float(), (0, pw, 0, ph), value=float("nan"))
            mask = F.pad(mask.long(), (0, pw, 0, ph), value=ignore_index)
            h, w = mask.shape
        tiles.append((img, mask))
        for y0 in window_starts(h, tile_size, 0):
            for x0 in window_starts(w, tile_size, 0):
                m = mask[y0 : y0 + tile_size, x0 : x0 + tile_size]
                if bool((m != ignore_index).any()):
                    windows.append((i, y0, x0))
    if not windows:
        raise BundleError(
            "the support masks have no labeled pixel (all are the ignore value or nodata); "
            "label at least part of one tile"
        )
    budget = None if max_pixels is None else max(1, int(max_pixels) // tile_size**2)
    if budget is not None and len(windows) > budget:
        order = torch.randperm(len(windows), generator=torch.Generator().manual_seed(seed))
        first_of_tile: dict[int, int] = {}
        for j in order.tolist():  # one crop of every tile first, then the rest at random
            first_of_tile.setdefault(windows[j][0], j)
        chosen = list(first_of_tile.values())
        rest = [j for j in order.tolist() if j not in set(chosen)]
        windows = [windows[j] for j in sorted(chosen + rest[: max(0, budget - len(chosen))])]
    t = tile_size
    x = torch.stack([tiles[i][0][:, r : r + t, c : c + t].float() for i, r, c in windows])
    y = torch.stack([tiles[i][1][r : r + t, c : c + t].long() for i, r, c in windows])
    return x, y, torch.tensor([i for i, _, _ in windows])


def _scores(learner: Learner, state: AdaptedState, x: Tensor, y: Tensor, k: int, ig: int) -> float:
    with torch.no_grad():
        pred = learner.predict(state.detached(), x).argmax(1)
    return miou(pred, y, k, ig)


def adapt_bundle(
    bundle: ModelBundle,
    images: Sequence[Tensor] | Tensor,
    masks: Sequence[Tensor] | Tensor,
    steps: int | None = None,
    *,
    device: str | torch.device = "cpu",
    info: dict[str, Any] | None = None,
    guard: bool = True,
    max_pixels: int | None = POOL_PIXELS,
) -> AdaptResult:
    """Adapt a meta-learned bundle on labeled support tiles.

    Args:
        bundle: A bundle of kind ``"meta"`` (an adapted one is re-adapted from its
            meta-learned weights).
        images: Raw (un-normalised) ``(C, H, W)`` tiles, or a ``(k, C, H, W)`` tensor.
        masks: Class-index masks ``(H, W)`` (or ``(k, H, W)``), the bundle's ignore index
            for unlabeled pixels.
        steps: Inner steps (``None``: the bundle's ``inner_steps``, else the learner's);
            with ``guard``, the most steps tried.
        device: Where to run.
        info: Extra JSON stored in the adapted bundle's ``info``.
        guard: Choose the steps on held-out support and never keep a state worse than no
            adaptation (:mod:`landcover.inference.adapt_guard`); ``False`` runs exactly
            ``steps`` steps.
        max_pixels: Pixel budget of the support crop pool (``None``: every crop), in
            pixels the network computes on: a model run at ``stride`` (see
            :mod:`landcover.models.small_unet`) gets ``stride**2`` times more input pixels.

    Returns:
        The adapted bundle, the support mIoU before and after, and the time taken.

    Raises:
        BundleError: Band mismatch, no labeled pixel, unmatched pairs, negative steps.
        ValueError: Mask values outside ``0..num_classes-1`` (besides the ignore index).
    """
    imgs, msks = list(images), list(masks)
    for i, img in enumerate(imgs):
        bundle.check_bands(img.shape[-3], source=f"support tile {i}")
    k = len(bundle.class_names)
    for i, m in enumerate(msks):
        bad = m[(m != bundle.ignore_index) & ((m < 0) | (m >= k))]
        if bad.numel():
            raise ValueError(
                f"support mask {i} has class indices {sorted(set(bad.tolist()))[:10]} outside "
                f"0..{k - 1} ({', '.join(bundle.class_names)}); use the bundle's classes"
            )
    if steps is None:
        steps = bundle.inner_steps
    if steps is not None and int(steps) < 0:
        raise BundleError(f"steps must be >= 0; got {steps}")
    if max_pixels is not None:
        max_pixels = input_pixel_budget(bundle, max_pixels)
    x, y, tile_of = crop_pool(
        imgs, msks, bundle.tile_size, bundle.ignore_index, max_pixels=max_pixels
    )
    x = torch.nan_to_num(bundle.normalize(x), nan=0.0).to(device)
    y = y.to(device)
    learner = bundle.build_learner(device)
    start = time.perf_counter()
    report: GuardReport | None = None
    if guard:
        top = int(steps) if steps is not None else int(getattr(learner, "default_steps", 0))
        state, report = guarded_adapt(
            learner, x, y, tile_of.to(device), top, num_classes=k,
            ignore_index=bundle.ignore_index,
        )  # fmt: skip
        miou_before, miou_after, steps = (
            report.support_miou_before, report.support_miou_after, report.steps_kept
        )  # fmt: skip
    else:
        before = learner.adapt(x, y, steps=0)
        miou_before = _scores(learner, before, x, y, k, bundle.ignore_index)
        state = learner.adapt(x, y, steps=steps).detached()
        miou_after = _scores(learner, state, x, y, k, bundle.ignore_index)
    seconds = time.perf_counter() - start
    base = bundle if bundle.kind == "meta" else _meta_of(bundle)
    result = AdaptResult(
        base, miou_before, miou_after, seconds, steps, len(imgs), len(x), guard=report
    )
    extra = {"adaptation": {"miou_before": miou_before, "miou_after": miou_after,
                            "seconds": seconds, "steps": steps, "crops": len(x),
                            "report": result.report(),
                            "held_out_curve": report.curve if report else []}}  # fmt: skip
    result.bundle = base.with_adapted(_to_cpu(state), info={**extra, **(info or {})})
    return result


def read_support(
    bundle: ModelBundle, support_dir: str | Path
) -> tuple[list[Tensor], list[Tensor], list[str]]:
    """Read a users' region folder as raw support tiles with masks in the bundle's classes.

    The folder's class file (if any) must name classes of the bundle; masks are remapped
    to the bundle's class order by name. Without a class file, masks are read with the
    bundle's own class values.

    Returns:
        Raw ``(C, H, W)`` images, ``(H, W)`` masks (bundle class indices, ignore index for
        unlabeled or nodata pixels) and the tile keys.
    """
    from landcover.geo.folder import find_class_file, read_region_folder

    folder = Path(support_dir)
    scheme = None if find_class_file(folder) is not None else bundle.scheme()
    region = read_region_folder(folder, scheme, cache=False)
    names = list(region.scheme.names)
    unknown = [n for n in names if n not in bundle.class_names]
    if unknown:
        raise BundleError(
            f"{folder}: classes {unknown} are not classes of the model "
            f"({', '.join(bundle.class_names)}); rename them in the class file"
        )
    lut = torch.full((256,), bundle.ignore_index, dtype=torch.long)
    for i, n in enumerate(names):
        lut[i] = bundle.class_names.index(n)
    images, masks = [], []
    for sample in region:
        images.append(sample["image"])
        masks.append(lut[sample["mask"].long().clamp(0, 255)])
    return images, masks, region.keys


def adapt_folder(
    bundle: ModelBundle,
    support_dir: str | Path,
    steps: int | None = None,
    *,
    device: str | torch.device = "cpu",
    guard: bool = True,
) -> AdaptResult:
    """Adapt on a folder in the users' format (``images/``, ``masks/``, class file).

    See :func:`read_support` for how the folder's classes are matched to the bundle's.
    """
    images, masks, keys = read_support(bundle, support_dir)
    info = {"support": {"folder": str(support_dir), "tiles": keys}}
    return adapt_bundle(bundle, images, masks, steps, device=device, info=info, guard=guard)


def _meta_of(bundle: ModelBundle) -> ModelBundle:
    from dataclasses import replace

    return replace(bundle, kind="meta", adapted={}, adapted_meta={})


def _to_cpu(state: AdaptedState) -> AdaptedState:
    def move(v: Any) -> Any:
        return v.cpu() if isinstance(v, Tensor) else v

    return AdaptedState(
        {k: v.cpu() for k, v in state.params.items()},
        {k: v.cpu() for k, v in state.buffers.items()},
        {k: move(v) for k, v in state.extras.items()},
        state.step,
    )
