"""Model factory: small U-Nets for CPU, segmentation-models-pytorch U-Nets, norm policy."""

from landcover.models.factory import ARCHS, build_from_config, build_model, count_parameters
from landcover.models.segmentation import SegmentationHead, SegmentationModel

__all__ = [
    "ARCHS",
    "SegmentationHead",
    "SegmentationModel",
    "build_from_config",
    "build_model",
    "count_parameters",
]
