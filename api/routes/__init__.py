"""One module per resource: health, models, adaptations, segment."""
