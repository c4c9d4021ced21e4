"""Streaming writers of the vector output: features go to the file batch by batch.

Neither writer holds more than one batch of features: GeoJSON is written as text, one
feature per line, between the collection's header and its closing bracket; the
GeoPackage layer is created by the first batch and appended to by the next ones
(:func:`pyogrio.raw.write`, one transaction per call, the layer's R-tree spatial index
kept up to date by GDAL). Both write to a temporary file that the caller moves into
place (:mod:`landcover.inference.vectorize`).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import IO, Any

import numpy as np
import shapely

#: GeoPackage columns, in order.
GPKG_FIELDS = ("class_id", "class_name", "color", "area_m2", "mean_prob")
#: Features per GeoPackage write (a transaction each).
GPKG_BATCH = 10_000


class GeoJSONWriter:
    """A GeoJSON FeatureCollection written feature by feature.

    Args:
        path: File to write (created or truncated).
        coordinate_system: The collection's ``coordinate_system`` member.
        crs_name: A ``crs`` member naming the coordinates' CRS (GeoJSON 2008's named CRS,
            e.g. a WKT), for coordinates that are not WGS 84; ``None``: no member
            (RFC 7946: WGS 84).
    """

    def __init__(self, path: Path, coordinate_system: str, crs_name: str | None = None) -> None:
        self._file: IO[str] = path.open("w", encoding="utf-8")
        crs = "" if crs_name is None else (
            f'"crs": {{"type": "name", "properties": {{"name": {json.dumps(crs_name)}}}}}, '
        )  # fmt: skip
        self._file.write(f'{{"type": "FeatureCollection", {crs}"coordinate_system": '
                         f'{json.dumps(coordinate_system)}, "features": [')  # fmt: skip
        self._first = True

    def write(self, geoms: np.ndarray, attrs: list[dict[str, Any]]) -> None:
        """Append features (geometries already in the file's coordinates)."""
        if not len(geoms):
            return
        # RFC 7946 right-hand rule: exteriors counter-clockwise, holes clockwise
        texts = shapely.to_geojson(shapely.orient_polygons(geoms, exterior_cw=False))
        lines = [f'{{"type": "Feature", "geometry": {g}, "properties": {json.dumps(a)}}}'
                 for g, a in zip(texts.tolist(), attrs)]  # fmt: skip
        self._file.write(("\n" if self._first else ",\n") + ",\n".join(lines))
        self._first = False

    def close(self) -> None:
        """End the collection and close the file."""
        self._file.write("\n]}\n")
        self._file.close()


class GpkgWriter:
    """A GeoPackage polygon layer written in batches of :data:`GPKG_BATCH` features.

    Args:
        path: File to write (must not exist yet).
        layer: Layer name.
        crs_wkt: The layer's spatial reference (``None``: GDAL's "Undefined SRS").
        version: GeoPackage version (``VERSION`` dataset option).
    """

    def __init__(self, path: Path, layer: str, crs_wkt: str | None, version: str) -> None:
        self.path, self.layer, self.crs_wkt, self.version = path, layer, crs_wkt, version
        self._geoms: list[np.ndarray] = []
        self._attrs: list[dict[str, Any]] = []
        self._created = False
        self.features = 0

    def write(self, geoms: np.ndarray, attrs: list[dict[str, Any]]) -> None:
        """Queue features (in the layer's CRS); written once a batch is full."""
        self._geoms.append(np.asarray(geoms, dtype=object))
        self._attrs.extend(attrs)
        if len(self._attrs) >= GPKG_BATCH:
            self._flush()

    def close(self) -> None:
        """Write what is queued (and the layer, if it has no feature)."""
        if self._attrs or not self._created:
            self._flush()

    def _flush(self) -> None:
        import pyogrio.raw

        attrs = self._attrs
        geoms = np.concatenate(self._geoms) if self._geoms else np.zeros(0, dtype=object)
        columns = [
            np.array([a["class_id"] for a in attrs], dtype=np.int32),
            np.array([a["class_name"] for a in attrs], dtype=object),
            np.array([a["color"] for a in attrs], dtype=object),
            np.array([np.nan if a["area_m2"] is None else a["area_m2"] for a in attrs],
                     np.float64),
            np.array([np.nan if a["mean_prob"] is None else a["mean_prob"] for a in attrs],
                     np.float64),
        ]  # fmt: skip
        wkb = shapely.to_wkb(geoms) if len(geoms) else np.array([], dtype=object)
        options = {} if self._created else {"dataset_options": {"VERSION": self.version}}
        with warnings.catch_warnings():  # a raster without a CRS gives a layer without one
            warnings.filterwarnings("ignore", "'crs' was not provided", UserWarning)
            pyogrio.raw.write(
                str(self.path), wkb, columns, list(GPKG_FIELDS), driver="GPKG",
                layer=self.layer, geometry_type="MultiPolygon", crs=self.crs_wkt,
                promote_to_multi=True, append=self._created, **options,
            )  # fmt: skip
        self.features += len(attrs)
        self._created = True
        self._geoms, self._attrs = [], []
