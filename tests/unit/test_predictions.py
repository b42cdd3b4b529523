"""The API's top/minconf semantics (imagetagger.predictions.select_predictions)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from imagetagger.labels import LABELS
from imagetagger.predictions import select_predictions


def softmax_like(seed: int = 0) -> np.ndarray:
    """1000 distinct float32 probabilities summing to ~1, as a model returns them."""
    logits = np.random.default_rng(seed).normal(0, 3, 1000)
    exp = np.exp(logits - logits.max())
    return (exp / exp.sum()).astype(np.float32)


def cat_probs() -> np.ndarray:
    probs = np.full(1000, 0.0001, np.float32)
    probs[282] = 0.41  # tiger_cat
    probs[281] = 0.30  # tabby
    probs[285] = 0.20  # Egyptian_cat
    probs[287] = 0.05  # lynx
    return probs


def labels_of(predictions: list[dict[str, float | str]]) -> list[str]:
    return [str(p["label"]) for p in predictions]


def test_neither_given_is_top_one() -> None:
    result = select_predictions(cat_probs())
    assert result == [{"label": "tiger_cat", "confidence": float(np.float32(0.41))}]
    assert select_predictions(cat_probs()) == select_predictions(cat_probs(), top=1)


def test_only_top() -> None:
    assert labels_of(select_predictions(cat_probs(), top=3)) == [
        "tiger_cat",
        "tabby",
        "Egyptian_cat",
    ]


def test_only_minconf_keeps_every_label_at_or_above() -> None:
    probs = cat_probs()
    assert labels_of(select_predictions(probs, minconf=0.05)) == [
        "tiger_cat",
        "tabby",
        "Egyptian_cat",
        "lynx",
    ]
    # The threshold is inclusive, on the exact value reported.
    exact = float(probs[285])
    assert labels_of(select_predictions(probs, minconf=exact))[-1] == "Egyptian_cat"
    assert "Egyptian_cat" not in labels_of(select_predictions(probs, minconf=exact + 1e-9))


def test_both_restrict() -> None:
    probs = cat_probs()
    assert labels_of(select_predictions(probs, top=2, minconf=0.05)) == ["tiger_cat", "tabby"]
    assert labels_of(select_predictions(probs, top=10, minconf=0.25)) == ["tiger_cat", "tabby"]
    assert select_predictions(probs, top=5, minconf=0.5) == []


def test_minconf_zero_alone_returns_all_thousand_sorted() -> None:
    probs = softmax_like()
    result = select_predictions(probs, minconf=0.0)
    assert len(result) == 1000
    confidences = [p["confidence"] for p in result]
    assert confidences == sorted(confidences, reverse=True)
    assert sorted(labels_of(result)) == sorted(LABELS)


def test_top_thousand_returns_everything_and_more_is_clamped() -> None:
    probs = softmax_like(1)
    everything = select_predictions(probs, top=1000)
    assert len(everything) == 1000
    assert select_predictions(probs, top=5000) == everything
    assert everything == select_predictions(probs, minconf=0.0)


def test_minconf_one() -> None:
    probs = cat_probs()
    assert select_predictions(probs, minconf=1.0) == []
    certain = np.zeros(1000, np.float32)
    certain[504] = 1.0
    assert select_predictions(certain, minconf=1.0) == [{"label": "coffee_mug", "confidence": 1.0}]


def test_minconf_above_max_is_empty() -> None:
    probs = softmax_like(2)
    assert select_predictions(probs, minconf=float(probs.max()) + 1e-6) == []
    assert select_predictions(probs, top=3, minconf=float(probs.max()) + 1e-6) == []


def test_confidence_is_a_plain_float_and_label_a_str() -> None:
    for prediction in select_predictions(softmax_like(3), top=10):
        assert type(prediction["confidence"]) is float
        assert type(prediction["label"]) is str
        assert set(prediction) == {"label", "confidence"}


def test_ties_are_ordered_by_class_index() -> None:
    uniform = np.full(1000, 0.001, np.float32)
    assert labels_of(select_predictions(uniform, top=3)) == list(LABELS[:3])
    assert labels_of(select_predictions(uniform, minconf=0.0)) == list(LABELS)

    probs = np.zeros(1000, np.float32)
    probs[[10, 500, 20, 999, 5]] = [0.2, 0.2, 0.2, 0.3, 0.1]
    result = select_predictions(probs, top=3)
    assert labels_of(result) == [LABELS[999], LABELS[10], LABELS[20]]
    # Same call, same answer: ties at the cut do not depend on partition order.
    assert all(select_predictions(probs, top=3) == result for _ in range(5))


def test_custom_labels() -> None:
    result = select_predictions(np.array([0.1, 0.7, 0.2]), ["a", "b", "c"], top=2)
    assert result == [{"label": "b", "confidence": 0.7}, {"label": "c", "confidence": 0.2}]


@pytest.mark.parametrize(
    ("probs", "kwargs"),
    [
        (np.zeros(999), {}),
        (np.zeros((1, 1000)), {}),
        (np.full(1000, np.nan), {}),
        (np.zeros(1000), {"top": 0}),
        (np.zeros(1000), {"top": -1}),
    ],
)
def test_rejects_misuse(probs: np.ndarray, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        select_predictions(probs, **kwargs)


def reference(probs: np.ndarray, top: int | None, minconf: float | None) -> list[int]:
    """The semantics written the slow, obvious way: full stable sort then filter."""
    scores = [float(p) for p in probs.astype(np.float64)]
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    if top is None and minconf is None:
        top = 1
    if minconf is not None:
        order = [i for i in order if scores[i] >= minconf]
    return order if top is None else order[:top]


@settings(max_examples=200, deadline=None)
@given(
    probs=arrays(
        np.float32,
        1000,
        elements=st.sampled_from([0.0, 0.001, 0.01, 0.05, 0.25, 0.5, 1.0])
        | st.floats(0, 1, width=32),
    ),
    top=st.none() | st.integers(1, 1200),
    minconf=st.none() | st.floats(0, 1),
)
def test_matches_the_obvious_reference(
    probs: np.ndarray, top: int | None, minconf: float | None
) -> None:
    expected = reference(probs, top, minconf)
    result = select_predictions(probs, top=top, minconf=minconf)
    assert labels_of(result) == [LABELS[i] for i in expected]
    assert [p["confidence"] for p in result] == [float(probs[i]) for i in expected]
