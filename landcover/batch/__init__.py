"""Batch mapping of many regions and scenes on Dask (``landcover batch MANIFEST``).

A YAML manifest (:mod:`~landcover.batch.manifest`) lists regions, each with a support
folder to adapt on (or an adapted bundle) and scenes to map (paths, globs, STAC). The plan
runs as a task graph on ``dask.distributed`` (:mod:`~landcover.batch.engine`): adaptations,
whole scenes and blocks of large scenes; outputs are those of ``landcover predict``.
"""
