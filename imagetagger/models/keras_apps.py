"""The loader of the ``keras_application`` architecture: a model of
``keras.applications`` (``efficientnet_b3``, the original service's model, is one).

The entry names the application (``build``'s ``application``) and its weight sources,
tried in order: the ``weights_path`` argument, the file named by the entry's
``weights_env``, or its Keras download (cached by Keras, so a Docker image can bake it
in at build time). An explicit path that fails is an error; it never falls back to
another source.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator, Mapping
from pathlib import Path

import keras

from imagetagger.errors import ModelLoadError
from imagetagger.models.specs import KerasDownload, ModelSpec

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


def build(spec: ModelSpec, dtype: str | None = None) -> keras.Model:
    """The untrained classifier: float32 RGB 0..255 (N, S, S, 3) in, softmax out."""
    application = getattr(keras.applications, str(spec.build_args["application"]))
    with dtype_policy(dtype):
        return application(
            include_top=True,
            weights=None,
            input_shape=(spec.input_size, spec.input_size, 3),
            classifier_activation="softmax",
        )


def _download(download: KerasDownload, cache_dir: Path | None) -> Path:
    with _socket_timeout(DOWNLOAD_SOCKET_TIMEOUT_S):
        path = keras.utils.get_file(
            download.file,
            download.url,
            cache_subdir="models",
            file_hash=download.md5,
            cache_dir=None if cache_dir is None else str(cache_dir),
        )
    return Path(path)


def _load_file(spec: ModelSpec, model: keras.Model, path: Path, origin: str) -> None:
    if not path.is_file():
        raise ModelLoadError(
            f"model {spec.name!r}: weights file {str(path)!r} ({origin}) not found"
        )
    try:
        model.load_weights(path)
    except Exception as exc:
        raise ModelLoadError(
            f"model {spec.name!r}: weights file {str(path)!r} ({origin}) is unusable: {exc}"
        ) from exc


def load(
    spec: ModelSpec,
    weights_path: str | Path | None = None,
    cache_dir: Path | None = None,
    dtype: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> keras.Model:
    """Build the model and load its weights; ``ModelLoadError`` names every source tried.

    ``cache_dir`` replaces the Keras home for the download (``None``: ``$KERAS_HOME`` or
    ``~/.keras``, where ``keras.applications`` caches it).
    """
    env = os.environ if environ is None else environ
    model = build(spec, dtype)
    if weights_path is not None:
        _load_file(spec, model, Path(weights_path), "argument weights_path")
        return model
    tried = ["argument weights_path (not given)"]
    if spec.weights_env is not None:
        if env.get(spec.weights_env):
            origin = f"environment variable {spec.weights_env}"
            _load_file(spec, model, Path(env[spec.weights_env]), origin)
            return model
        tried.append(f"environment variable {spec.weights_env} (not set)")
    download = spec.keras_download
    if download is None:
        raise ModelLoadError(
            f"model {spec.name!r}: no usable weights. Sources tried: {'; '.join(tried)}"
        )
    try:
        model.load_weights(_download(download, cache_dir))
    except Exception as exc:
        tried.append(f"Keras 'imagenet' weights from {download.url} (failed: {exc})")
        raise ModelLoadError(
            f"model {spec.name!r}: no usable weights. Sources tried: {'; '.join(tried)}"
        ) from exc
    return model
