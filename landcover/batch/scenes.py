"""A region's scenes: paths, globs and STAC files resolved to rasters and output paths.

Layout of a region's outputs under the manifest's ``output`` folder::

    REGION/maps/ID.tif                  class map (as `landcover predict` writes it)
    REGION/maps/ID.qml, ID.tif.aux.xml  its QGIS style and GDAL category names
    REGION/maps/ID_probabilities.tif    per-class probabilities (if asked)
    REGION/maps/ID.geojson, ID.gpkg     polygons (if asked)
    REGION/mosaic.vrt                   all class maps of the region in one raster
    REGION/items.json                   STAC ItemCollection of the outputs
    REGION/adapted.bundle (+ .json)     the region's adapted bundle and its record
    REGION/.batch/                      completion records, STAC band VRTs, blocks
"""

from __future__ import annotations

import glob
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from landcover.batch.errors import ManifestError
from landcover.batch.manifest import Manifest, PredictOptions, Region
from landcover.batch.stac_input import read_stac

_GLOB_CHARS = set("*?[")


@dataclass
class Scene:
    """One raster to map and where its outputs go.

    Attributes:
        id: Unique name within the region (file stem or STAC item id).
        region: The region's name.
        input: The raster given to ``predict_raster`` (the file, or a VRT of a STAC item's
            assets).
        classes: Output class map.
        record: Completion record (:mod:`~landcover.batch.records`).
        work: Scratch folder of the scene (blocks).
        probabilities: Output probabilities, if asked.
        geojson: Output GeoJSON, if asked.
        gpkg: Output GeoPackage, if asked.
        provenance: Where the scene came from (path, or STAC item, collection, assets).
    """

    id: str
    region: str
    input: Path
    classes: Path
    record: Path
    work: Path
    probabilities: Path | None = None
    geojson: Path | None = None
    gpkg: Path | None = None
    provenance: dict[str, Any] = field(default_factory=dict)


def region_dir(manifest: Manifest, region: Region) -> Path:
    """The region's output folder."""
    return manifest.path(manifest.output) / region.name


def _scene(scene_id: str, region: Region, root: Path, src: Path,
           opts: PredictOptions, provenance: dict[str, Any]) -> Scene:  # fmt: skip
    maps = root / "maps"
    return Scene(
        id=scene_id,
        region=region.name,
        input=src,
        classes=maps / f"{scene_id}.tif",
        record=root / ".batch" / "records" / f"{scene_id}.json",
        work=root / ".batch" / "work" / scene_id,
        probabilities=maps / f"{scene_id}_probabilities.tif" if opts.probabilities else None,
        geojson=maps / f"{scene_id}.geojson" if opts.geojson else None,
        gpkg=maps / f"{scene_id}.gpkg" if opts.gpkg else None,
        provenance=provenance,
    )


def _paths(manifest: Manifest, region: Region, index: int) -> list[Path]:
    found: list[Path] = []
    for pattern in region.scenes:
        full = manifest.path(pattern)
        if _GLOB_CHARS & set(pattern):
            matches = sorted(Path(p) for p in glob.glob(str(full), recursive=True))
            if not matches:
                raise ManifestError(f"regions[{index}] ({region.name!r}), field 'scenes': "
                                    f"{pattern!r} matches no file")  # fmt: skip
            found += [m for m in matches if m.is_file()]
        elif full.is_file():
            found.append(full)
        else:
            raise ManifestError(f"regions[{index}] ({region.name!r}), field 'scenes': "
                                f"{full} not found; fix the path (relative paths start at "
                                "the manifest's folder)")  # fmt: skip
    return found


def resolve_scenes(manifest: Manifest, region: Region, index: int, bands: list[str]) -> list[Scene]:
    """Every scene of region ``index`` (paths and globs first, then STAC items).

    Args:
        manifest: The manifest.
        region: The region.
        index: Its position in the manifest (for error messages).
        bands: The bundle's band names (to choose STAC assets).

    Raises:
        ManifestError: A path or glob finds nothing, a STAC item lacks the bands, or two
            scenes of the region have the same id.
    """
    root = region_dir(manifest, region)
    opts = manifest.options(region)
    scenes: list[Scene] = []
    for path in _paths(manifest, region, index):
        prov = {"path": str(path.resolve())}
        scenes.append(_scene(path.stem, region, root, path.resolve(), opts, prov))
    for stac_file in region.stac:
        try:
            items = read_stac(manifest.path(stac_file), bands)
        except ManifestError as err:
            raise ManifestError(
                f"regions[{index}] ({region.name!r}), field 'stac': {err}"
            ) from None
        for item in items:
            src = item.materialize(root / ".batch" / "inputs")
            prov = {**item.provenance, "hrefs": item.hrefs, "bands": item.bands}
            scenes.append(_scene(item.id, region, root, src, opts, prov))
    seen: dict[str, Scene] = {}
    for s in scenes:
        if s.id in seen:
            raise ManifestError(
                f"regions[{index}] ({region.name!r}): two scenes are named {s.id!r} "
                f"({seen[s.id].provenance.get('path') or seen[s.id].provenance.get('item')} and "
                f"{s.provenance.get('path') or s.provenance.get('item')}); outputs would "
                "collide: rename one or split the region"
            )
        seen[s.id] = s
    return scenes
