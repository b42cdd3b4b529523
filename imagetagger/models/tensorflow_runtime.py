"""The ``tensorflow`` runtime: a registered Keras model with its weights, warmed up,
wrapped for fast batch inference (GPUs, mixed precision, ``@serve.batch``).

:func:`imagetagger.models.runtimes.load_model` calls it for ``runtime: tensorflow``,
and the LiteRT conversion builds its flatbuffer from the model it loads. Every failure
to obtain usable weights is a ``ModelLoadError`` that names the model and the source
tried; nothing here falls back to random or different weights.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from imagetagger.errors import ModelLoadError
from imagetagger.models import weight_cache
from imagetagger.models.batches import check_batch, no_probabilities
from imagetagger.models.efficientnet_lite import assign_torch_weights, build_efficientnet_lite
from imagetagger.models.keras_apps import load_efficientnet_b3
from imagetagger.models.options import COMPUTE_DTYPES
from imagetagger.models.sources import package_weights_file
from imagetagger.models.specs import ModelSpec, get_spec
from imagetagger.models.torch_legacy import UnsafePickleError, read_state_dict

logger = logging.getLogger(__name__)

# Bump when the Keras graph or the torch->Keras mapping changes: old caches are then ignored.
CACHE_FORMAT = 1


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


def cache_file(spec: ModelSpec, source: Path, cache_dir: Path) -> Path:
    """Cache location of the converted weights; tied to the exact bytes of ``source``."""
    digest = weight_cache.file_sha256(source)[:16]
    return cache_dir / f"{spec.name}-{digest}-v{CACHE_FORMAT}.weights.h5"


def _load_lite(
    spec: ModelSpec, weights_path: str | None, cache_dir: Path | None, dtype: str | None
) -> keras.Model:
    if weights_path is not None:
        source, origin = Path(weights_path), "argument weights_path"
    else:
        source = package_weights_file(spec)
        origin = f"package {spec.weights_package!r}"
    if not source.is_file():
        raise ModelLoadError(
            f"model {spec.name!r}: weights file {str(source)!r} ({origin}) not found"
        )

    model = build_efficientnet_lite(spec.name, dtype)
    try:
        cached = cache_file(spec, source, cache_dir or weight_cache.default_cache_dir())
    except OSError as exc:
        raise ModelLoadError(
            f"model {spec.name!r}: weights file {str(source)!r} ({origin}) is unreadable: {exc}"
        ) from exc
    started = time.perf_counter()
    if weight_cache.try_load(model, cached):
        logger.info(
            "Loaded %s weights from cache %s in %.2fs",
            spec.name,
            cached,
            time.perf_counter() - started,
        )
        return model
    try:
        assign_torch_weights(model, read_state_dict(source))
    except (OSError, ValueError, UnsafePickleError) as exc:
        raise ModelLoadError(
            f"model {spec.name!r}: weights file {str(source)!r} ({origin}) is unusable: {exc}"
        ) from exc
    logger.info(
        "Converted %s weights from %s in %.2fs", spec.name, source, time.perf_counter() - started
    )
    try:
        weight_cache.store(model, cached)
    except OSError as exc:  # a read-only cache must not stop the service
        logger.warning("Could not cache %s weights at %s: %s", spec.name, cached, exc)
    return model


def load_tensorflow_classifier(
    name: str,
    *,
    weights_path: str | None = None,
    cache_dir: Path | None = None,
    compute_dtype: str = "float32",
) -> TensorFlowClassifier:
    """Build model ``name``, load its weights, warm it up and check its output.

    ``weights_path`` overrides the registered source (a legacy ``.pth`` for the Lite
    models, a Keras ``.h5``/``.weights.h5`` for B3). ``cache_dir`` holds converted Lite
    weights (default ``$IMAGETAGGER_CACHE_DIR`` or ``~/.cache/imagetagger``) and, when
    given, B3's ``imagenet`` download (default: the Keras cache). ``compute_dtype``
    ``"mixed_float16"`` suits GPUs; outputs are float32 either way.
    """
    spec = get_spec(name)
    if compute_dtype not in COMPUTE_DTYPES:
        raise ValueError(f"compute_dtype must be one of {COMPUTE_DTYPES}, got {compute_dtype!r}")
    policy = None if compute_dtype == "float32" else compute_dtype
    if spec.architecture == "efficientnet_lite":
        model = _load_lite(spec, weights_path, cache_dir, policy)
    elif spec.architecture == "keras_efficientnet_b3":
        model = load_efficientnet_b3(weights_path, download_cache_dir=cache_dir, dtype=policy)
    else:  # a registry entry without a loader is a programming error
        raise ModelLoadError(f"model {name!r}: no loader for architecture {spec.architecture!r}")

    classifier = TensorFlowClassifier(spec, model)
    probs = classifier.warmup()
    if not (np.all(np.isfinite(probs)) and abs(float(probs.sum()) - 1.0) < 1e-2):
        raise ModelLoadError(f"model {name!r}: warm-up output is not a probability distribution")
    return classifier
