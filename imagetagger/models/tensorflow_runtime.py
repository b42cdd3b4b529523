"""The ``tensorflow`` runtime: a registered Keras model with its weights, warmed up,
wrapped for fast batch inference (GPUs, mixed precision, ``@serve.batch``).

:func:`imagetagger.models.runtimes.load_model` calls it for ``runtime: tensorflow``,
and the LiteRT conversion builds its flatbuffer from the model it loads. Every failure
to obtain usable weights is a ``ModelLoadError`` that names the model and the source
tried; nothing here falls back to random or different weights.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from imagetagger.errors import ModelLoadError
from imagetagger.models.batches import check_batch, no_probabilities
from imagetagger.models.options import COMPUTE_DTYPES
from imagetagger.models.specs import ModelSpec, get_spec, loader_module


class TensorFlowClassifier:
    """A Keras model on TensorFlow: uint8 RGB batches in, float32 softmax probabilities out.

    On the TensorFlow backend inference runs through one ``tf.function`` whose input
    signature leaves the batch dimension open, so a new batch size never retraces
    (``model.predict`` costs tens of milliseconds of per-call overhead). Other
    backends use ``predict_on_batch``.
    """

    def __init__(self, spec: ModelSpec, model: keras.Model) -> None:
        self.spec = spec
        self.model = model
        # The compiled graph on TensorFlow (None elsewhere); kept to check it never retraces.
        self.graph_function: Callable[[Any], Any] | None = None
        self._infer = self._compile()

    def _compile(self) -> Callable[[np.ndarray], np.ndarray]:
        model = self.model
        if keras.backend.backend() != "tensorflow":
            return lambda batch: np.asarray(model.predict_on_batch(batch.astype(np.float32)))

        import tensorflow as tf

        size = self.spec.input_size

        @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.uint8)])
        def infer(images: tf.Tensor) -> tf.Tensor:
            probs = model(tf.cast(images, tf.float32), training=False)
            return tf.cast(probs, tf.float32)

        self.graph_function = infer
        return lambda batch: infer(batch).numpy()

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities, float32 (N, 1000), for a uint8 batch (N, S, S, 3)."""
        batch = check_batch(self.spec, batch)
        if batch.shape[0] == 0:
            return no_probabilities()
        return np.asarray(self._infer(batch), dtype=np.float32)

    def warmup(self, batch_size: int = 1) -> np.ndarray:
        """Run one batch so the first request does not pay for tracing and kernel setup."""
        size = self.spec.input_size
        return self.predict_proba(np.zeros((batch_size, size, size, 3), dtype=np.uint8))


def load_tensorflow_classifier(
    name: str,
    *,
    weights_path: str | None = None,
    cache_dir: Path | None = None,
    compute_dtype: str = "float32",
) -> TensorFlowClassifier:
    """Build model ``name``, load its weights, warm it up and check its output.

    The entry's loader module builds it (:mod:`imagetagger.models.specs`).
    ``weights_path`` overrides the registered source (a legacy ``.pth`` for the Lite
    models, a Keras ``.h5``/``.weights.h5`` for a Keras application). ``cache_dir`` holds
    converted Lite weights (default ``$IMAGETAGGER_CACHE_DIR`` or ``~/.cache/imagetagger``)
    and, when given, a Keras download (default: the Keras cache). ``compute_dtype``
    ``"mixed_float16"`` suits GPUs; outputs are float32 either way.
    """
    spec = get_spec(name)
    if compute_dtype not in COMPUTE_DTYPES:
        raise ValueError(f"compute_dtype must be one of {COMPUTE_DTYPES}, got {compute_dtype!r}")
    policy = None if compute_dtype == "float32" else compute_dtype
    model = loader_module(spec).load(spec, weights_path, cache_dir, policy)

    classifier = TensorFlowClassifier(spec, model)
    probs = classifier.warmup()
    if not (np.all(np.isfinite(probs)) and abs(float(probs.sum()) - 1.0) < 1e-2):
        raise ModelLoadError(f"model {name!r}: warm-up output is not a probability distribution")
    return classifier
