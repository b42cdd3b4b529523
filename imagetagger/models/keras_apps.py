"""EfficientNetB3 from ``keras.applications``: the original service's model.

Weights come from, in order: the ``weights_path`` argument, the
``IMAGETAGGER_B3_WEIGHTS`` environment variable, or the Keras ``imagenet``
download (cached by Keras, so a Docker image can bake it in at build time). An
explicit path that fails is an error; it never falls back to another source.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator, Mapping
from pathlib import Path

import keras

from imagetagger.errors import ModelLoadError

MODEL_NAME = "efficientnet_b3"
INPUT_SIZE = 300
WEIGHTS_ENV = "IMAGETAGGER_B3_WEIGHTS"
# The file, URL and md5 that keras.applications.EfficientNetB3(weights="imagenet") uses.
IMAGENET_FILE = "efficientnetb3.h5"
IMAGENET_URL = "https://storage.googleapis.com/keras-applications/efficientnetb3.h5"
IMAGENET_MD5 = "ffd1fdc53d0ce67064dc6a9c7960ede0"
DOWNLOAD_SOCKET_TIMEOUT_S = 30.0


@contextlib.contextmanager
def dtype_policy(name: str | None) -> Iterator[None]:
    """Build layers under Keras dtype policy ``name``, restoring the global policy after."""
    if name is None:
        yield
        return
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    """Bound each blocking socket call of the download, so a black-holed network cannot hang."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds if previous is None else previous)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def build_efficientnet_b3(dtype: str | None = None) -> keras.Model:
    """The untrained B3 classifier: float32 RGB 0..255 (N, 300, 300, 3) in, softmax out."""
    with dtype_policy(dtype):
        return keras.applications.EfficientNetB3(
            include_top=True,
            weights=None,
            input_shape=(INPUT_SIZE, INPUT_SIZE, 3),
            classifier_activation="softmax",
        )


def _download_imagenet(cache_dir: Path | None) -> Path:
    with _socket_timeout(DOWNLOAD_SOCKET_TIMEOUT_S):
        path = keras.utils.get_file(
            IMAGENET_FILE,
            IMAGENET_URL,
            cache_subdir="models",
            file_hash=IMAGENET_MD5,
            cache_dir=None if cache_dir is None else str(cache_dir),
        )
    return Path(path)


def _load_file(model: keras.Model, path: Path, origin: str) -> None:
    if not path.is_file():
        raise ModelLoadError(
            f"model {MODEL_NAME!r}: weights file {str(path)!r} ({origin}) not found"
        )
    try:
        model.load_weights(path)
    except Exception as exc:
        raise ModelLoadError(
            f"model {MODEL_NAME!r}: weights file {str(path)!r} ({origin}) is unusable: {exc}"
        ) from exc


def load_efficientnet_b3(
    weights_path: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    download_cache_dir: Path | None = None,
    dtype: str | None = None,
) -> keras.Model:
    """Build B3 and load its ImageNet weights; ``ModelLoadError`` names every source tried.

    ``download_cache_dir`` replaces the Keras home for the ``imagenet`` download
    (``None``: ``$KERAS_HOME`` or ``~/.keras``, where ``keras.applications`` caches it).
    """
    env = os.environ if environ is None else environ
    model = build_efficientnet_b3(dtype)
    if weights_path is not None:
        _load_file(model, Path(weights_path), "argument weights_path")
        return model
    if env.get(WEIGHTS_ENV):
        _load_file(model, Path(env[WEIGHTS_ENV]), f"environment variable {WEIGHTS_ENV}")
        return model
    try:
        path = _download_imagenet(download_cache_dir)
        model.load_weights(path)
    except Exception as exc:
        raise ModelLoadError(
            f"model {MODEL_NAME!r}: no usable weights. Sources tried: "
            f"argument weights_path (not given); environment variable {WEIGHTS_ENV} (not set); "
            f"Keras 'imagenet' weights from {IMAGENET_URL} (failed: {exc})"
        ) from exc
    return model
