"""Model factory: small U-Nets for CPU, segmentation-models-pytorch U-Nets, norm policy."""
