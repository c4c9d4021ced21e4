"""Model bundles, adaptation to a support folder, sliding-window prediction, writers.

Submodules are imported on use (``from landcover.inference.bundle import ModelBundle``) so
that ``landcover --help`` and the service start without loading torch models.
"""
