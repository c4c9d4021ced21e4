"""SEN12MS reader: Sentinel-1/2 patches with MODIS land cover; a region is a (season, scene).

Schmitt et al., "SEN12MS – a curated dataset of georeferenced multi-spectral Sentinel-1/2
imagery for deep learning and data fusion", ISPRS Annals 2019. On-disk layout::

    ROOT/ROIs1158_spring/s1_{scene}/ROIs1158_spring_s1_{scene}_p{n}.tif   VV, VH (dB, float32)
                        /s2_{scene}/ROIs1158_spring_s2_{scene}_p{n}.tif   13 bands (uint16)
                        /lc_{scene}/ROIs1158_spring_lc_{scene}_p{n}.tif   IGBP, LCCS LC/LU/SH
    ROOT/ROIs1868_summer/..., ROOT/ROIs1970_fall/..., ROOT/ROIs2017_winter/...

Patches are 256×256 at 10 m. Labels come from the IGBP band, either as the 17 IGBP classes or
simplified to the 10 DFC2020 classes by ``IGBP_TO_DFC2020`` (0 = no data -> ignore index).
Splits: the test regions default to the scene ids held out by Rußwurm et al., "Meta-Learning
for Few-Shot Land Cover Classification" (CVPR-W 2020), :data:`DEFAULT_TEST_SCENES`; entries
are scene ids (held out in every season) or ``"season/scene"`` strings (``"spring/118"`` or
``"ROIs1158_spring/118"``). Validation regions are listed the same way or, by default, a
seeded ``val_fraction`` of the remaining regions.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from rasterio.windows import Window

from landcover.geo.classes import ClassScheme
from landcover.geo.errors import GeoDataError
from landcover.geo.raster import open_raster
from landcover.geo.region import Region, Sample, TileRef

SEASONS = ("ROIs1158_spring", "ROIs1868_summer", "ROIs1970_fall", "ROIs2017_winter")
S1_BANDS = ("VV", "VH")
S2_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10",
            "B11", "B12")  # fmt: skip
LC_BANDS = ("IGBP", "LCCS_LC", "LCCS_LU", "LCCS_SH")
IGBP_NAMES = (
    "Evergreen Needleleaf Forests", "Evergreen Broadleaf Forests", "Deciduous Needleleaf Forests",
    "Deciduous Broadleaf Forests", "Mixed Forests", "Closed Shrublands", "Open Shrublands",
    "Woody Savannas", "Savannas", "Grasslands", "Permanent Wetlands", "Croplands",
    "Urban and Built-Up Lands", "Cropland/Natural Vegetation Mosaics", "Permanent Snow and Ice",
    "Barren", "Water Bodies",
)  # fmt: skip
DFC2020_NAMES = ("Forest", "Shrubland", "Savanna", "Grassland", "Wetlands", "Croplands",
                 "Urban/Built-up", "Snow/Ice", "Barren", "Water")  # fmt: skip
#: IGBP value (index 0..17) -> simplified DFC2020 value (0 = no data).
IGBP_TO_DFC2020 = (0, 1, 1, 1, 1, 1, 2, 2, 3, 3, 4, 5, 6, 7, 6, 8, 9, 10)
#: Scene ids held out for testing by Rußwurm et al. (2020).
DEFAULT_TEST_SCENES = (118, 126, 122, 145, 108, 8, 65, 101, 81, 134, 123, 103, 135, 110, 95,
                       130, 49, 91, 17, 22, 32, 73, 90, 141, 21)  # fmt: skip

IGBP_SCHEME = ClassScheme(names=IGBP_NAMES, values=tuple(range(1, 18)), ignore_value=0)
DFC2020_SCHEME = ClassScheme(
    names=DFC2020_NAMES,
    values=tuple(range(1, 11)),
    colors=((0, 153, 0), (198, 176, 68), (251, 255, 19), (182, 255, 5), (39, 255, 135),
            (194, 79, 68), (165, 165, 165), (105, 255, 248), (249, 255, 164), (28, 13, 255)),
    ignore_value=0,
)  # fmt: skip
_PATCH = re.compile(r"^(ROIs\d{4}_\w+?)_lc_(\d+)_p(\d+)\.tif$")

Sources = Literal["s1", "s2", "both"]
Split = Literal["train", "val", "test", "all"]


def _season_of(name: str) -> str:
    for s in SEASONS:
        if name in (s, s.split("_")[1]):
            return s
    raise KeyError(f"unknown season {name!r}; use one of {SEASONS} or spring/summer/fall/winter")


def _matches(entries: Sequence[int | str], season: str, scene: int) -> bool:
    for e in entries:
        if isinstance(e, str) and "/" in e:
            s, sc = e.split("/", 1)
            if _season_of(s) == season and int(sc) == scene:
                return True
        elif int(e) == scene:
            return True
    return False


class SEN12MS:
    """SEN12MS regions.

    Args:
        root: Folder holding the ``ROIs*`` season folders.
        sources: ``"s2"`` (default), ``"s1"`` or ``"both"`` (S1 bands first).
        s2_bands: Subset of :data:`S2_BANDS` to read (all by default).
        scheme: ``"dfc2020"`` (10 simplified classes) or ``"igbp"`` (17 classes).
        patch_size: Cut each 256 patch into ``patch_size`` tiles (e.g. 128 -> 4 tiles).
        split: Which regions to return: ``"train"``, ``"val"``, ``"test"`` or ``"all"``.
        test_scenes: Test regions (scene ids or ``"season/scene"``).
        val_scenes: Validation regions; ``None`` draws ``val_fraction`` of the rest.
        val_fraction: Share of non-test regions used for validation when not listed.
        split_seed: Seed of that draw.
        seasons: Restrict to these seasons.
        cache: Keep loaded tiles in memory.
    """

    SEASONS = SEASONS
    S1_BANDS = S1_BANDS
    S2_BANDS = S2_BANDS
    LC_BANDS = LC_BANDS

    def __init__(
        self,
        root: str | Path,
        *,
        sources: Sources = "s2",
        s2_bands: Sequence[str] | None = None,
        scheme: Literal["dfc2020", "igbp"] = "dfc2020",
        patch_size: int | None = None,
        split: Split = "all",
        test_scenes: Sequence[int | str] = DEFAULT_TEST_SCENES,
        val_scenes: Sequence[int | str] | None = None,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        seasons: Sequence[str] | None = None,
        cache: bool = False,
    ) -> None:
        self.root = Path(root)
        if sources not in ("s1", "s2", "both"):
            raise KeyError(f"sources must be 's1', 's2' or 'both'; got {sources!r}")
        if scheme not in ("dfc2020", "igbp"):
            raise KeyError(f"scheme must be 'dfc2020' or 'igbp'; got {scheme!r}")
        if split not in ("train", "val", "test", "all"):
            raise KeyError(f"split must be train, val, test or all; got {split!r}")
        bad = [b for b in (s2_bands or ()) if b not in S2_BANDS]
        if bad:
            raise KeyError(f"unknown S2 bands {bad}; valid: {', '.join(S2_BANDS)}")
        self.sources = ("s1", "s2") if sources == "both" else (sources,)
        self.s2_idx = [S2_BANDS.index(b) + 1 for b in (s2_bands or S2_BANDS)]
        names: list[str] = []
        if "s1" in self.sources:
            names += S1_BANDS
        if "s2" in self.sources:
            names += [S2_BANDS[i - 1] for i in self.s2_idx]
        self.band_names = tuple(names)
        self.scheme_name = scheme
        self.scheme = DFC2020_SCHEME if scheme == "dfc2020" else IGBP_SCHEME
        self.patch_size = patch_size
        self.cache = cache
        wanted = [_season_of(s) for s in seasons] if seasons else list(SEASONS)
        self._all = self._scan(wanted)
        test = [k for k in self._all if _matches(test_scenes, *k)]
        rest = [k for k in self._all if k not in test]
        if val_scenes is not None:
            val = [k for k in rest if _matches(val_scenes, *k)]
        else:
            rng = np.random.default_rng(split_seed)
            n_val = round(val_fraction * len(rest))
            val = [rest[i] for i in sorted(rng.permutation(len(rest))[:n_val])]
        train = [k for k in rest if k not in val]
        keys = {"train": train, "val": val, "test": test, "all": list(self._all)}
        #: Region names of every split (``"{season}_{scene}"``).
        self.splits = {name: [f"{s}_{c}" for s, c in ks] for name, ks in keys.items()}
        self.regions = [self._region(k) for k in keys[split]]

    def _scan(self, seasons: Sequence[str]) -> dict[tuple[str, int], list[int]]:
        if not self.root.is_dir():
            raise GeoDataError("SEN12MS root folder not found", self.root)
        found: dict[tuple[str, int], list[int]] = {}
        for season in seasons:
            sdir = self.root / season
            if not sdir.is_dir():
                continue
            for lc_dir in sorted(sdir.glob("lc_*")):
                scene = int(lc_dir.name.split("_")[1])
                for f in lc_dir.iterdir():
                    m = _PATCH.match(f.name)
                    if m and m.group(1) == season and int(m.group(2)) == scene:
                        found.setdefault((season, scene), []).append(int(m.group(3)))
        if not found:
            raise GeoDataError(
                f"no SEN12MS patches: expected {'|'.join(SEASONS)}/lc_<scene>/"
                "<season>_lc_<scene>_p<n>.tif under the folder",
                self.root,
            )
        for key, patches in found.items():
            patches.sort()
            for src in self.sources:
                for p in patches:
                    path = self.path(key[0], key[1], p, src)
                    if not path.is_file():
                        raise GeoDataError(
                            f"{src} patch missing for {path.name.replace(src, 'lc')}", path
                        )
        return dict(sorted(found.items()))

    def path(self, season: str, scene: int, patch: int, source: str) -> Path:
        """File of one patch of one source (``s1``, ``s2`` or ``lc``)."""
        return self.root / season / f"{source}_{scene}" / f"{season}_{source}_{scene}_p{patch}.tif"

    def _loader(
        self, season: str, scene: int, patch: int, window: Window | None
    ) -> Callable[[], Sample]:
        def load() -> Sample:
            parts = []
            for src in self.sources:
                path = self.path(season, scene, patch, src)
                with open_raster(path) as ds:
                    bands = self.s2_idx if src == "s2" else [1, 2]
                    if ds.count < max(bands):
                        raise GeoDataError(
                            f"{src} patch has {ds.count} bands, expected {max(bands)}+", path
                        )
                    parts.append(ds.read(bands, window=window).astype(np.float32))
            lc_path = self.path(season, scene, patch, "lc")
            with open_raster(lc_path) as ds:
                igbp = ds.read(1, window=window)
            image = np.concatenate(parts)
            valid = np.isfinite(image).all(0)
            image = np.where(np.isfinite(image), image, 0).astype(np.float32)
            idx = IGBP_SCHEME.encode(igbp, source=lc_path)
            if self.scheme_name == "dfc2020":
                lut = np.full(256, IGBP_SCHEME.ignore_index, dtype=np.int64)
                lut[:17] = np.asarray(IGBP_TO_DFC2020[1:]) - 1
                idx = lut[idx]
            if image.shape[1:] != idx.shape:
                raise GeoDataError(
                    f"label patch {idx.shape} does not match image {image.shape[1:]}", lc_path
                )
            idx[~valid] = self.scheme.ignore_index
            return {
                "image": torch.from_numpy(image),
                "mask": torch.from_numpy(idx),
                "valid": torch.from_numpy(valid),
            }

        return load

    def _region(self, key: tuple[str, int]) -> Region:
        season, scene = key
        tiles: list[TileRef] = []
        for p in self._all[key]:
            if self.patch_size is None:
                tiles.append(TileRef(f"p{p}", self._loader(season, scene, p, None)))
                continue
            with open_raster(self.path(season, scene, p, "lc")) as ds:
                h, w = ds.height, ds.width
            ps = self.patch_size
            if h % ps or w % ps:
                raise ValueError(f"patch_size {ps} must divide the {h}×{w} SEN12MS patches")
            for i, (r, c) in enumerate((r, c) for r in range(0, h, ps) for c in range(0, w, ps)):
                tiles.append(
                    TileRef(f"p{p}_{i}", self._loader(season, scene, p, Window(c, r, ps, ps)))
                )
        with open_raster(self.path(season, scene, self._all[key][0], "lc")) as ds:
            crs = ds.crs
        return Region(
            f"{season}_{scene}", self.scheme, self.band_names, tiles, crs=crs,
            meta={"season": season, "scene": scene, "dataset": "sen12ms"}, cache=self.cache,
        )  # fmt: skip
