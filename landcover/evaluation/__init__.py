"""Metrics (mIoU, accuracy, kappa), few-shot evaluation, reports and plots, the demo."""
