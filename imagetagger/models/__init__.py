"""Model registry and loading.

Importing this package is cheap: only the registry (``specs``) is loaded eagerly,
so the Downloader can read input sizes without pulling in TensorFlow. Keras runs on
TensorFlow unless ``KERAS_BACKEND`` says otherwise; which runtime serves a model
(LiteRT by default on CPU) is chosen in :mod:`imagetagger.models.runtimes`.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from imagetagger.models.specs import MODEL_SPECS, ModelSpec, get_spec

__all__ = ["MODEL_SPECS", "Classifier", "ModelSpec", "get_spec", "load_classifier"]


def __getattr__(name: str):
    """Import the Keras-backed loader only when it is asked for."""
    if name in ("Classifier", "load_classifier"):
        from imagetagger.models import loader

        return getattr(loader, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
