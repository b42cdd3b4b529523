"""The input check every runtime applies before inference, in one place."""

from __future__ import annotations

import numpy as np

from imagetagger.labels import NUM_CLASSES
from imagetagger.models.specs import ModelSpec

__all__ = ["NUM_CLASSES", "check_batch", "no_probabilities"]


def check_batch(spec: ModelSpec, batch: np.ndarray) -> np.ndarray:
    """``batch`` as a C-contiguous uint8 (N, S, S, 3) array; ValueError otherwise."""
    size = spec.input_size
    if not isinstance(batch, np.ndarray) or batch.dtype != np.uint8:
        raise ValueError(f"expected a uint8 numpy array, got {getattr(batch, 'dtype', batch)}")
    if batch.ndim != 4 or batch.shape[1:] != (size, size, 3):
        raise ValueError(f"expected shape (N, {size}, {size}, 3), got {batch.shape}")
    return np.ascontiguousarray(batch)


def no_probabilities() -> np.ndarray:
    """The answer for an empty batch."""
    return np.zeros((0, NUM_CLASSES), dtype=np.float32)
