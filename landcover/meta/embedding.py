"""Embedding helpers shared by the learners that work on an encoder's features.

Prototypical Networks, the ridge and SVM heads, CNP and the sequence learners (MANN,
SNAIL) all read images through an encoder: its ``embed`` method when it has one (the
segmentation models' per-pixel embeddings, Conv-4's flat features), else its forward.
"""

from __future__ import annotations

from torch import Tensor, nn


def encode(encoder: nn.Module, x: Tensor) -> Tensor:
    """The encoder's embeddings of ``x``: ``encoder.embed(x)`` if defined, else ``encoder(x)``."""
    return encoder.embed(x) if hasattr(encoder, "embed") else encoder(x)


def flat_embedding(encoder: nn.Module, x: Tensor) -> Tensor:
    """Embeddings of ``x`` flattened to ``(n, D)``."""
    return encode(encoder, x).flatten(1)


def feature_dim_of(encoder: nn.Module, feature_dim: int | None) -> int:
    """``feature_dim`` if given, else the encoder's ``feature_dim`` attribute.

    Raises:
        ValueError: If neither is available.
    """
    dim = feature_dim if feature_dim is not None else getattr(encoder, "feature_dim", None)
    if not isinstance(dim, int) or dim < 1:
        raise ValueError(
            f"pass feature_dim= (the width of the encoder's flat embeddings): "
            f"{type(encoder).__name__} has no feature_dim attribute"
        )
    return dim
