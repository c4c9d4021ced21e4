"""Lightning meta-training (module, data module, CLI) and baselines."""
