"""landcover: few-shot land-cover segmentation for remote sensing by meta-learning."""

__version__ = "0.1.0"
