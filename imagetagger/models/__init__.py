"""Model registry and runtimes.

Importing this package is cheap: only the registry (``specs``) is loaded eagerly,
so the Downloader can read input sizes without pulling in TensorFlow. Keras runs on
TensorFlow unless ``KERAS_BACKEND`` says otherwise. :mod:`options` holds what every
runtime shares (names, options, the ``Classifier`` protocol); :mod:`runtimes` loads a
model on one of them: :mod:`litert` (the CPU default) or :mod:`tensorflow_runtime`.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from imagetagger.models.specs import MODEL_SPECS, ModelSpec, get_spec

__all__ = ["MODEL_SPECS", "ModelSpec", "get_spec"]
