"""The torch device a command was asked for, checked before any work starts."""

from __future__ import annotations


def check_device(name: str) -> None:
    """Refuse a device that torch does not know or that this machine does not have.

    Args:
        name: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or another torch device name.

    Raises:
        ValueError: A name torch does not know, or CUDA where no CUDA device is visible.
    """
    import torch

    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown --device {name!r}; use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: no CUDA device is visible here; use --device cpu")
