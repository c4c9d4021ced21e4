"""A region's outputs as a STAC ItemCollection, with their provenance.

One item per mapped scene: its footprint (WGS 84), the input's datetime when it came from
STAC (else the time the map was made), assets for the class map, probabilities, polygons
and QGIS style (hrefs relative to the collection file), and ``landcover:`` properties for
provenance: the source, the base bundle, the adapted bundle and its SHA-256, the support
tiles, the guard's report and the class areas in km².
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import pystac
import rasterio
from rasterio.warp import transform_bounds

from landcover.batch.records import atomic_write_text

_MEDIA = {".tif": pystac.MediaType.COG, ".geojson": pystac.MediaType.GEOJSON,
          ".gpkg": "application/geopackage+sqlite3", ".qml": "text/xml"}  # fmt: skip
_ROLES = {".tif": ["data"], ".geojson": ["data"], ".gpkg": ["data"], ".qml": ["style"]}


def _footprint(path: str) -> tuple[dict[str, Any] | None, list[float] | None]:
    with rasterio.open(path) as ds:
        if ds.crs is None:
            return None, None
        w, s, e, n = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds)
    ring = [[w, s], [e, s], [e, n], [w, n], [w, s]]
    return {"type": "Polygon", "coordinates": [ring]}, [w, s, e, n]


def _asset_key(path: Path, scene: str) -> str:
    stem = path.name.removeprefix(scene).lstrip("_.") or path.suffix
    if path.name.endswith(".aux.xml"):
        return "categories"
    key = {".tif": "classes", ".geojson": "geojson", ".gpkg": "gpkg", ".qml": "style"}
    if stem.startswith("probabilities"):
        return "probabilities-style" if path.suffix == ".qml" else "probabilities"
    return key.get(path.suffix, stem)


def output_item(record: dict[str, Any], region: dict[str, Any], base: Path) -> pystac.Item:
    """The STAC item of one scene's completion record (hrefs relative to ``base``)."""
    geometry, bbox = _footprint(record["classes"])
    prov = record.get("provenance", {})
    when = prov.get("datetime")
    made = dt.datetime.fromtimestamp(Path(record["classes"]).stat().st_mtime, dt.UTC)
    item = pystac.Item(
        id=record["scene"],
        geometry=geometry,
        bbox=bbox,
        datetime=dt.datetime.fromisoformat(when) if when else made,
        properties={
            "created": made.isoformat(),
            "landcover:region": record["region"],
            "landcover:source": prov,
            "landcover:base_bundle": region.get("base_bundle"),
            "landcover:adapted_bundle": region.get("adapted_bundle"),
            "landcover:adapted_sha256": record["bundle_sha256"],
            "landcover:support": region.get("support"),
            "landcover:support_tiles": region.get("support_tiles"),
            "landcover:guard_report": region.get("guard_report"),
            "landcover:class_areas_km2": {
                name: c["km2"] for name, c in record["areas"]["classes"].items()
            },
        },
    )
    for path in map(Path, record["outputs"]):
        suffix = ".qml" if path.suffix == ".qml" else path.suffix
        if path.name.endswith(".aux.xml"):
            media, roles = "application/xml", ["metadata"]
        else:
            media, roles = _MEDIA.get(suffix), _ROLES.get(suffix, ["data"])
        href = os.path.relpath(path.resolve(), base.resolve())
        item.add_asset(_asset_key(path, record["scene"]),
                       pystac.Asset(href, media_type=media, roles=roles))  # fmt: skip
    return item


def write_item_collection(records: list[dict[str, Any]], region: dict[str, Any], out: Path) -> Path:
    """Write the region's ItemCollection (``items.json``) atomically."""
    items = [output_item(r, region, out.parent) for r in records]
    payload = pystac.ItemCollection(items).to_dict(transform_hrefs=False)
    return atomic_write_text(out, json.dumps(payload, indent=2) + "\n")
