"""Model registry and loading.

Importing this package is cheap: only the registry (``specs``) is loaded eagerly,
so the Downloader can read input sizes without pulling in TensorFlow. The
TensorFlow backend is the serving default; an explicit ``KERAS_BACKEND`` wins.
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
