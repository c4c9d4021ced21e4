"""Scenes from STAC: an ItemCollection or a catalog file, read with ``pystac``.

The asset of an item is chosen by the bundle's band names, so a Sentinel-2, Landsat or
NAIP item maps without a hand-written band list. A band of an asset matches a bundle band
when its ``name`` or common name (``eo:common_name`` in STAC 1.1 ``bands``, ``common_name``
in ``eo:bands``) equals the bundle band's name, ignoring case. Then, in order of preference:

1. an asset whose bands are exactly the bundle's, in order: its file is mapped as it is;
2. an asset holding all of them (more bands, another order): a VRT of those bands;
3. one single-band asset per bundle band (Sentinel-2's layout): a VRT stacking them
   (the bands must share one grid).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pystac

from landcover.batch.errors import ManifestError
from landcover.batch.vrt import stack_vrt, subset_vrt


@dataclass
class StacScene:
    """One item's raster for the bundle.

    Attributes:
        id: The item's id.
        hrefs: The asset file(s): one (with ``bands``) or one per band (stacked).
        bands: 1-based band indexes of ``hrefs[0]`` to use (``None``: all, as they are).
        provenance: Item id, collection, datetime, bbox and asset keys for the outputs.
    """

    id: str
    hrefs: list[str]
    bands: list[int] | None
    provenance: dict[str, Any] = field(default_factory=dict)

    def materialize(self, folder: Path) -> Path:
        """The raster to map: the asset itself, or a VRT written into ``folder``."""
        if len(self.hrefs) > 1:
            return stack_vrt(self.hrefs, folder / f"{self.id}.vrt")
        if self.bands is None:
            return Path(self.hrefs[0])
        return subset_vrt(self.hrefs[0], folder / f"{self.id}.vrt", bands=self.bands)


def _band_names(asset: pystac.Asset) -> list[set[str]]:
    """For each band of an asset, the names it answers to (lower case)."""
    bands = asset.extra_fields.get("bands") or asset.extra_fields.get("eo:bands") or []
    out = []
    for b in bands:
        names = {str(b.get(k)).lower() for k in ("name", "eo:common_name", "common_name")
                 if b.get(k)}  # fmt: skip
        out.append(names)
    return out


def _href(asset: pystac.Asset, base: Path) -> str:
    href = asset.get_absolute_href() or asset.href
    p = Path(href)
    return str(p if p.is_absolute() or "://" in href else (base / p).resolve())


def choose_assets(item: pystac.Item, bands: list[str], base: Path) -> StacScene:
    """The asset(s) of ``item`` that hold the bundle's ``bands`` (see the module docstring).

    Raises:
        ManifestError: No asset (or set of single-band assets) holds all the bands.
    """
    wanted = [b.lower() for b in bands]
    described = {k: _band_names(a) for k, a in item.assets.items()}
    partial = None
    for key, names in described.items():
        idx = [next((i for i, n in enumerate(names) if w in n), None) for w in wanted]
        if None in idx:
            continue
        href = _href(item.assets[key], base)
        if idx == list(range(len(wanted))) and len(names) == len(wanted):
            return StacScene(item.id, [href], None, _provenance(item, [key]))
        partial = partial or StacScene(item.id, [href], [i + 1 for i in idx],  # type: ignore[operator]
                                       _provenance(item, [key]))  # fmt: skip
    if partial is not None:
        return partial
    singles = {}
    for w in wanted:
        key = next((k for k, n in described.items() if len(n) == 1 and w in n[0]), None)
        if key is None:
            break
        singles[w] = key
    if len(singles) == len(wanted):
        keys = [singles[w] for w in wanted]
        hrefs = [_href(item.assets[k], base) for k in keys]
        return StacScene(item.id, hrefs, None, _provenance(item, keys))
    have = {k: [sorted(n)[0] for n in v] for k, v in described.items() if v}
    raise ManifestError(
        f"STAC item {item.id!r}: no asset holds the bundle's bands {bands} (assets and "
        f"their bands: {have or 'none describe bands'}); describe the bands with 'bands' "
        "or 'eo:bands', or list the files under 'scenes'"
    )


def _provenance(item: pystac.Item, keys: list[str]) -> dict[str, Any]:
    return {
        "item": item.id,
        "collection": item.collection_id,
        "datetime": item.datetime.isoformat() if item.datetime else None,
        "bbox": item.bbox,
        "assets": keys,
    }


def read_stac(path: Path, bands: list[str]) -> list[StacScene]:
    """The scenes of a STAC ItemCollection, catalog or collection file (or a single item).

    Raises:
        ManifestError: The file is missing or not STAC, or an item lacks the bands.
    """
    if not path.is_file():
        raise ManifestError(f"{path}: STAC file not found")
    try:
        data = json.loads(path.read_text())
        if data.get("type") == "FeatureCollection":
            items = list(pystac.ItemCollection.from_dict(data, preserve_dict=False))
        else:
            obj = pystac.read_file(str(path.resolve()))
            is_item = isinstance(obj, pystac.Item)
            items = [obj] if is_item else list(obj.get_items(recursive=True))  # type: ignore[union-attr]
    except (ValueError, KeyError, TypeError, AttributeError, pystac.STACError) as err:
        raise ManifestError(f"{path}: not a STAC ItemCollection or catalog ({err})") from None
    if not items:
        raise ManifestError(f"{path}: the STAC file holds no items")
    return [choose_assets(item, bands, path.resolve().parent) for item in items]
