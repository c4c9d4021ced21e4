"""The model bundle: one self-describing file that the CLI and the REST service load.

Format: a `safetensors <https://github.com/huggingface/safetensors>`_ file. The tensors are
the learner's ``state_dict`` (meta-learned weights, learned inner rates, per-step
BatchNorm statistics, ...) under ``learner.<key>`` and, for an *adapted* bundle, the
adapted state under ``adapted.params.<name>``, ``adapted.buffers.<name>`` and
``adapted.extras.<key>``. Everything else is JSON in the safetensors header metadata under
the key ``"landcover"``: format version, landcover version, bundle kind, model
architecture and options, learner name and options, loss, band names, normalisation
statistics, class scheme (names, values, colours, ignore index), tile size and free
``info`` (training run, support mIoU, ...).

Loading never unpickles: safetensors holds raw tensor bytes only, and a file that is not a
safetensors file (a pickled ``.ckpt`` / ``.pt``, a zip) is refused before anything is
parsed. Saving is atomic (temporary file + ``os.replace``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from landcover import __version__
from landcover.geo.classes import ClassScheme
from landcover.inference.bundle_format import (
    FORMAT_NAME,
    FORMAT_VERSION,
    KINDS,
    compatible,
    read_header,
)
from landcover.inference.errors import BandMismatchError, BundleError
from landcover.meta.maml import PROTO_NAMES
from landcover.meta.protocol import AdaptedState, Learner
from landcover.models.segmentation import SegmentationModel

__all__ = ["FORMAT_VERSION", "ModelBundle", "compatible", "find_model", "read_header"]


def find_model(learner: nn.Module) -> SegmentationModel:
    """The factory-built segmentation network inside ``learner``."""
    for m in learner.modules():
        if isinstance(m, SegmentationModel):
            return m
    raise BundleError(
        "the learner holds no landcover.models SegmentationModel; build its network with "
        "landcover.models.build_model so the bundle can describe it"
    )


def shared_file_mode() -> int:
    """``0o644`` minus the process umask: the mode a plain ``open(path, "w")`` would give."""
    umask = 0o022
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                umask = int(line.split()[1], 8)
    except OSError:
        pass
    return 0o644 & ~umask


@dataclass
class ModelBundle:
    """Everything needed to adapt and predict, in memory; see the module docstring.

    Attributes:
        model: Model config (``SegmentationModel.config``: arch, in_channels, num_classes,
            options).
        learner: ``{"name": ..., "options": {...}}`` for ``build_learner``.
        state: The learner's ``state_dict``.
        bands: Band names, in input order.
        mean: Normalisation mean per band (raw units).
        std: Normalisation standard deviation per band.
        classes: Class scheme as ``ClassScheme.to_dict()``.
        ignore_index: Class index of unlabeled pixels in masks.
        tile_size: Tile size the model was meta-trained on.
        inner_steps: Default number of inner steps for adaptation (``None``: learner's).
        kind: ``"meta"`` (meta-learned) or ``"adapted"`` (adapted to one region).
        adapted: Tensors of the adapted state (``params.*``, ``buffers.*``, ``extras.*``).
        adapted_meta: JSON part of the adapted state (``step``, non-tensor extras).
        info: Free JSON (training run, metrics, support mIoU, ...).
        landcover_version: Version of landcover that wrote the bundle.
    """

    model: dict[str, Any]
    learner: dict[str, Any]
    state: dict[str, Tensor]
    bands: list[str]
    mean: list[float]
    std: list[float]
    classes: dict[str, Any]
    ignore_index: int = 255
    tile_size: int = 128
    inner_steps: int | None = None
    kind: str = "meta"
    adapted: dict[str, Tensor] = field(default_factory=dict)
    adapted_meta: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    landcover_version: str = __version__

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise BundleError(f"bundle kind must be one of {list(KINDS)}; got {self.kind!r}")
        # learners may feed extra input channels (CAVIA's context) besides the bands
        n = int(self.model.get("in_channels", -1)) - int(self.learner.get("extra_channels", 0))
        if not len(self.bands) == len(self.mean) == len(self.std) == n:
            raise BundleError(
                f"the model takes {n} bands but the bundle has {len(self.bands)} band names, "
                f"{len(self.mean)} means and {len(self.std)} stds; give one of each per band"
            )
        if any(not float(s) > 0 for s in self.std):
            raise BundleError(f"normalisation stds must be > 0; got {self.std}")
        k = len(self.classes.get("classes", []))
        if k != int(self.model.get("num_classes", -1)):
            raise BundleError(
                f"the model predicts {self.model.get('num_classes')} classes but the class "
                f"scheme lists {k}; they must agree"
            )

    # ------------------------------------------------------------------ build
    @classmethod
    def from_learner(
        cls,
        learner: Learner,
        *,
        bands: list[str],
        mean: list[float],
        std: list[float],
        classes: ClassScheme | dict[str, Any],
        tile_size: int,
        inner_steps: int | None = None,
        info: dict[str, Any] | None = None,
    ) -> ModelBundle:
        """Describe a (meta-trained) learner built by ``landcover.meta.build_learner``.

        Args:
            learner: The learner; its ``name`` / ``options`` (set by ``build_learner``) and
                its factory-built network are recorded.
            bands: Band names of the input, in order.
            mean: Normalisation mean per band.
            std: Normalisation std per band.
            classes: The class scheme (object or ``to_dict()`` form).
            tile_size: Training tile size.
            inner_steps: Default adaptation steps (``None``: the learner's default).
            info: Free JSON metadata.
        """
        name = getattr(learner, "name", None)
        if not name:
            raise BundleError(
                "the learner has no registry name; build it with "
                "landcover.meta.registry.build_learner so the bundle can rebuild it"
            )
        scheme = classes.to_dict() if isinstance(classes, ClassScheme) else dict(classes)
        info = dict(info or {})
        _json_check(info, "info")
        config = find_model(learner).config
        extra = int(config["in_channels"]) - len(bands)
        if extra and extra != getattr(learner, "context_dim", None):
            raise BundleError(
                f"the model takes {config['in_channels']} input channels but {len(bands)} band "
                "names were given; give one name, mean and std per band"
            )
        learner_info = {"name": name, "options": dict(getattr(learner, "options", {}) or {})}
        if extra:
            learner_info["extra_channels"] = extra
        return cls(
            model=config,
            learner=learner_info,
            state={k: v.detach().cpu().clone() for k, v in learner.state_dict().items()},
            bands=[str(b) for b in bands],
            mean=[float(v) for v in mean],
            std=[float(v) for v in std],
            classes=scheme,
            ignore_index=int(scheme.get("ignore_index", 255)),
            tile_size=int(tile_size),
            inner_steps=None if inner_steps is None else int(inner_steps),
            info=info,
        )

    def loss_fn(self) -> nn.Module:
        """Pixel-wise cross-entropy ignoring :attr:`ignore_index` (the training loss)."""
        return nn.CrossEntropyLoss(ignore_index=self.ignore_index)

    def build_learner(self, device: str | torch.device = "cpu") -> Learner:
        """Rebuild the learner with its stored weights, in eval mode on ``device``."""
        from landcover.meta.registry import build_learner
        from landcover.models.factory import build_from_config

        model = build_from_config(self.model)
        learner = build_learner(
            self.learner["name"], model, self.loss_fn(), **self.learner.get("options", {})
        )
        try:
            learner.load_state_dict(self.state, strict=True)
        except RuntimeError as err:
            raise BundleError(
                f"the bundle's weights do not fit learner {self.learner['name']!r} with "
                f"model {self.model['arch']!r} ({err}); re-export the bundle from its run"
            ) from None
        return learner.to(device).eval()

    def scheme(self) -> ClassScheme:
        """The class scheme (names, values, colours)."""
        return ClassScheme.from_dict(self.classes)

    @property
    def class_names(self) -> list[str]:
        """Class names, by class index."""
        return [str(c["name"]) for c in self.classes["classes"]]

    @property
    def num_bands(self) -> int:
        """Number of input bands."""
        return len(self.bands)

    def check_bands(self, n: int, source: str = "") -> None:
        """Raise :class:`BandMismatchError` unless the input has the model's band count."""
        if int(n) != self.num_bands:
            raise BandMismatchError(self.num_bands, int(n), self.bands, source)

    def normalize(self, x: Tensor) -> Tensor:
        """Normalise raw ``(..., C, H, W)`` values with the stored statistics."""
        self.check_bands(x.shape[-3])
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        return (x - mean) / std

    # ------------------------------------------------------------------ adapted state
    def with_adapted(self, state: AdaptedState, info: dict[str, Any] | None = None) -> ModelBundle:
        """A new bundle of kind ``"adapted"`` that also stores ``state``."""
        tensors: dict[str, Tensor] = {}
        extras_json: dict[str, Any] = {}
        for group, values in (("params", state.params), ("buffers", state.buffers)):
            for k, v in values.items():
                tensors[f"{group}.{k}"] = v.detach().cpu().clone()
        for k, v in state.extras.items():
            if isinstance(v, Tensor):
                tensors[f"extras.{k}"] = v.detach().cpu().clone()
            else:
                _json_check(v, f"adapted state extra {k!r}")
                extras_json[k] = v
        merged = {**self.info, **(info or {})}
        _json_check(merged, "info")
        return replace(
            self,
            kind="adapted",
            adapted=tensors,
            adapted_meta={"step": int(state.step), "extras": extras_json},
            info=merged,
        )

    def adapted_state(self, device: str | torch.device = "cpu") -> AdaptedState:
        """The stored adapted state (only for ``kind == "adapted"``)."""
        if self.kind != "adapted":
            raise BundleError(
                "this is a meta-learned bundle with no adapted state; adapt it first "
                "(`landcover adapt model.bundle --support DIR -o adapted.bundle`)"
            )
        out = AdaptedState(step=int(self.adapted_meta.get("step", 0)))
        out.extras.update(self.adapted_meta.get("extras", {}))
        for key, v in self.adapted.items():
            group, _, name = key.partition(".")
            target = {"params": out.params, "buffers": out.buffers, "extras": out.extras}[group]
            target[name] = v.to(device)
        return out

    # ------------------------------------------------------------------ files
    def header(self) -> dict[str, Any]:
        """The JSON metadata written into the file."""
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "landcover_version": self.landcover_version,
            "kind": self.kind,
            "model": self.model,
            "learner": self.learner,
            "bands": self.bands,
            "normalization": {"mean": self.mean, "std": self.std},
            "classes": self.classes,
            "ignore_index": self.ignore_index,
            "tile_size": self.tile_size,
            "inner_steps": self.inner_steps,
            "adapted": self.adapted_meta if self.kind == "adapted" else None,
            "info": self.info,
        }

    def describe(self) -> dict[str, Any]:
        """Short JSON summary (bands, classes with colours, tile size) for listings."""
        return {
            "kind": self.kind,
            "arch": self.model["arch"],
            "learner": self.learner["name"],
            "bands": self.bands,
            "classes": self.classes["classes"],
            "tile_size": self.tile_size,
            "inner_steps": self.inner_steps,
            "landcover_version": self.landcover_version,
        }

    def save(self, path: str | Path) -> Path:
        """Write the bundle atomically (temporary file in the same folder + rename)."""
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # clone: safetensors refuses tensors that share storage (tied weights, views)
        tensors = {f"learner.{k}": v.detach().cpu().clone() for k, v in self.state.items()}
        tensors.update({f"adapted.{k}": v.detach().cpu().clone() for k, v in self.adapted.items()})
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            save_file(tensors, str(tmp), metadata={"landcover": json.dumps(self.header())})
            # safetensors creates 0600 files; a bundle is meant to be read by other users
            # (e.g. a container's non-root service user reading a mounted models folder)
            os.chmod(tmp, shared_file_mode())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    @classmethod
    def load(cls, path: str | Path) -> ModelBundle:
        """Read and validate a bundle (never unpickles; see the module docstring).

        Raises:
            BundleError: Not a bundle, corrupt, from an incompatible version, or missing
                fields; the message says what to do.
        """
        from safetensors import safe_open

        path = Path(path)
        header = read_header(path)
        try:
            with safe_open(str(path), framework="pt") as f:
                tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        except Exception as err:  # safetensors raises its own error types
            raise BundleError(
                f"{path}: the bundle's tensors cannot be read ({err}); the file is truncated "
                "or corrupt, export or copy it again"
            ) from None
        state = {k[8:]: v for k, v in tensors.items() if k.startswith("learner.")}
        adapted = {k[8:]: v for k, v in tensors.items() if k.startswith("adapted.")}
        norm = header["normalization"]
        return cls(
            model=header["model"],
            learner=header["learner"],
            state=state,
            bands=list(header["bands"]),
            mean=list(norm["mean"]),
            std=list(norm["std"]),
            classes=header["classes"],
            ignore_index=int(header["ignore_index"]),
            tile_size=int(header["tile_size"]),
            inner_steps=header.get("inner_steps"),
            kind=header["kind"],
            adapted=adapted,
            adapted_meta=header.get("adapted") or {},
            info=header.get("info") or {},
            landcover_version=header["landcover_version"],
        )


def _json_check(value: Any, what: str) -> None:
    try:
        json.dumps(value)
    except (TypeError, ValueError) as err:
        raise BundleError(f"{what} must be JSON-serialisable to go into a bundle: {err}") from None


def check_mappable(bundle: ModelBundle, state: AdaptedState) -> None:
    """Refuse to map with a Proto-MAML model that was not adapted.

    A learner meta-trained with ``proto_init`` sets its classifier from the class prototypes
    of each task's labelled tiles, so its meta-learned classifier is never trained on its
    own: mapping with it (a meta bundle, or an adapted one that took no inner step and set
    no prototypes, as bundles adapted before 0 steps meant prototypes did) gives a
    meaningless map. A state that set the prototypes (``extras["proto_init"]``, e.g.
    ``landcover adapt --steps 0``: the prototype classifier with no gradient step) maps.

    Raises:
        BundleError: The bundle's learner uses ``proto_init`` and ``state`` neither took an
            inner step nor set the prototypes, or holds no adapted classifier; the message
            says how to adapt it.
    """
    options = (bundle.learner or {}).get("options") or {}
    adapted = state.step >= 1 or bool(state.extras.get("proto_init"))
    if options.get("proto_init") and (not adapted or PROTO_NAMES[0] not in state.params):
        raise BundleError(
            "this model was meta-trained with proto_init (Proto-MAML): its classifier is "
            "made from each region's labelled tiles, so it cannot map before it is adapted; "
            "run `landcover adapt BUNDLE --support DIR -o adapted.bundle` (or the service's "
            "POST /v1/adaptations) and map with the adapted model"
        )
