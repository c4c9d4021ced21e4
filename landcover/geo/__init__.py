"""Geospatial data: rasterio I/O, dataset readers, tile folders, synthetic regions."""
