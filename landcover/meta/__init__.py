"""Model-agnostic meta-learning on ``torch.func`` (no geo, no Lightning)."""
