"""The batch manifest: a YAML file listing regions, their models and their scenes.

Example (paths are relative to the manifest's folder)::

    output: runs/country            # where every output goes (one folder per region)
    retries: 2                      # extra tries of a failing scene before it is recorded
    block_pixels: 16777216          # scenes with more pixels may be cut into blocks of at
                                    # least this size, when the workers need the work
    predict:                        # as `landcover predict`'s options
      cog: true
      style: true
      gpkg: false
    regions:
      - name: dubai
        bundle: models/meta.bundle  # meta-learned bundle ...
        support: support/dubai      # ... adapted once on this folder (guarded)
        steps: 10
        scenes: [scenes/dubai/*.tif]
      - name: abu-dhabi
        adapted: models/abu.bundle  # an already adapted bundle
        stac: [items/abu.json]      # a STAC ItemCollection or catalog

:func:`load_manifest` validates it with pydantic and turns every problem into one
:class:`~landcover.batch.errors.ManifestError` that names the entry and the field.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from landcover.batch.errors import ManifestError

#: Default pixels of a scene above which it is cut into blocks (4096 x 4096).
BLOCK_PIXELS = 4096 * 4096
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class PredictOptions(BaseModel):
    """Options of every scene's prediction, as ``landcover predict``'s flags."""

    model_config = ConfigDict(extra="forbid")

    cog: bool = True
    style: bool = True
    probabilities: bool = False
    geojson: bool = False
    gpkg: bool = False
    min_area: int = Field(16, ge=0)
    min_area_m2: float | None = Field(None, ge=0)
    simplify: float = Field(1.0, ge=0)
    window: int | None = Field(None, ge=1)
    overlap: int | None = Field(None, ge=0)
    batch_size: int = Field(4, ge=1)

    @model_validator(mode="after")
    def _overlap_below_window(self) -> PredictOptions:
        if self.window is not None and self.overlap is not None and self.overlap >= self.window:
            raise ValueError(
                f"overlap ({self.overlap}) must be smaller than window ({self.window})"
            )
        return self

    @property
    def vectors(self) -> bool:
        """Whether polygons are written."""
        return self.geojson or self.gpkg


class Region(BaseModel):
    """One region: its model (support folder to adapt on, or adapted bundle) and scenes."""

    model_config = ConfigDict(extra="forbid")

    name: str
    bundle: Path | None = None
    support: Path | None = None
    adapted: Path | None = None
    steps: int | None = Field(None, ge=1)
    guard: bool = True
    scenes: list[str] = Field(default_factory=list)
    stac: list[Path] = Field(default_factory=list)
    predict: PredictOptions | None = None

    @field_validator("name")
    @classmethod
    def _slug(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(
                f"{v!r} is not a folder-safe name; use letters, digits, '.', '_' or '-'"
            )
        return v

    @field_validator("stac", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _model_and_scenes(self) -> Region:
        if self.adapted is not None and (self.bundle is not None or self.support is not None):
            raise ValueError("give either 'adapted' or 'bundle' + 'support', not both")
        if self.adapted is None and (self.bundle is None or self.support is None):
            raise ValueError(
                "needs a model: 'adapted: ADAPTED.bundle', or 'bundle: META.bundle' with "
                "'support: FOLDER' of labelled tiles to adapt on"
            )
        if not self.scenes and not self.stac:
            raise ValueError("lists no scenes: add 'scenes' (paths or globs) or 'stac' files")
        return self


class Manifest(BaseModel):
    """The whole manifest (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    output: Path
    retries: int = Field(2, ge=0)
    block_pixels: int = Field(BLOCK_PIXELS, ge=65536)
    predict: PredictOptions = Field(default_factory=PredictOptions)
    regions: list[Region] = Field(min_length=1)
    _root: Path = PrivateAttr(default=Path("."))

    @model_validator(mode="after")
    def _unique_names(self) -> Manifest:
        seen: set[str] = set()
        for i, r in enumerate(self.regions):
            if r.name in seen:
                raise ValueError(f"regions[{i}]: name {r.name!r} is used twice; names must differ")
            seen.add(r.name)
        return self

    def path(self, p: Path | str) -> Path:
        """``p`` relative to the manifest's folder (absolute paths unchanged)."""
        p = Path(p).expanduser()
        return p if p.is_absolute() else self._root / p

    def options(self, region: Region) -> PredictOptions:
        """The region's predict options (its own, else the manifest's)."""
        return region.predict or self.predict


def _where(loc: tuple[Any, ...], raw: dict[str, Any]) -> str:
    """``regions[2] ('dubai'), field 'support'`` for a pydantic error location."""
    entry, rest = "manifest", list(loc)
    if len(loc) >= 2 and loc[0] == "regions" and isinstance(loc[1], int):
        regions = raw.get("regions")
        item = regions[loc[1]] if isinstance(regions, list) and loc[1] < len(regions) else None
        name = item.get("name") if isinstance(item, dict) else None
        entry = f"regions[{loc[1]}]" + (f" ({name!r})" if name else "")
        rest = list(loc[2:])
    field = ".".join(str(k) for k in rest)
    return f"{entry}, field {field!r}" if field else entry


def load_manifest(path: str | Path) -> Manifest:
    """Read and validate a manifest.

    Raises:
        ManifestError: The file is missing, not YAML, or an entry is invalid (the message
            lists every problem with its entry and field).
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found; give the path of a YAML file")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ManifestError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(raw, dict):
        raise ManifestError(f"{path}: must be a mapping with 'output' and 'regions'")
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as err:
        lines = []
        for e in err.errors():
            msg = e["msg"].removeprefix("Value error, ")
            lines.append(f"  {_where(tuple(e['loc']), raw)}: {msg}")
        raise ManifestError(f"{path}: invalid manifest:\n" + "\n".join(lines)) from None
    manifest._root = path.resolve().parent
    return manifest
