"""Model bundles, adaptation to a support folder, sliding-window prediction, writers."""
