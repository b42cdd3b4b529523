"""Turn one image's 1000 class probabilities into the API's ``top``/``minconf`` answer."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from imagetagger.labels import LABELS


def select_predictions(
    probs: np.ndarray,
    labels: Sequence[str] = LABELS,
    *,
    top: int | None = None,
    minconf: float | None = None,
) -> list[dict[str, float | str]]:
    """Pick the labels the client asked for, most confident first.

    - neither ``top`` nor ``minconf``: the single most likely label (same as ``top=1``);
    - only ``top``: the ``top`` most likely labels;
    - only ``minconf``: every label whose confidence is ``>= minconf``;
    - both: at most ``top`` labels, each with confidence ``>= minconf``.

    Equal confidences are ordered by class index, so the answer is deterministic.
    Confidences are plain Python floats. Comparison happens in float64 on the exact
    values returned, so every returned confidence really is ``>= minconf``.
    """
    scores = np.asarray(probs, dtype=np.float64)
    if scores.ndim != 1 or scores.shape[0] != len(labels):
        raise ValueError(f"expected {len(labels)} probabilities, got shape {scores.shape}")
    if not np.isfinite(scores).all():
        raise ValueError("probabilities must be finite")
    if top is not None and top < 1:
        raise ValueError(f"top must be >= 1, got {top}")
    if top is None and minconf is None:
        top = 1

    if minconf is None:
        candidates = np.arange(scores.shape[0])
    else:
        candidates = np.flatnonzero(scores >= minconf)
    if top is not None and top < candidates.shape[0]:
        candidates = _top_k(scores, candidates, top)

    chosen = scores[candidates]
    order = np.lexsort((candidates, -chosen))  # confidence descending, then class index
    return [
        {"label": labels[int(index)], "confidence": float(scores[index])}
        for index in candidates[order]
    ]


def _top_k(scores: np.ndarray, candidates: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` best candidates in O(n); ties at the cut go to the lowest class index."""
    values = scores[candidates]
    kth_best = values[np.argpartition(values, values.shape[0] - k)[values.shape[0] - k]]
    above = candidates[values > kth_best]
    at_cut = candidates[values == kth_best][: k - above.shape[0]]
    return np.concatenate((above, at_cut))
