"""A checksummed on-disk cache of converted Keras weights.

Converting the torch weights happens once; later starts load the cached
``.weights.h5``. The checksum sidecar and atomic writes live in :mod:`checksums`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from imagetagger.models.checksums import (
    CACHE_DIR_ENV,
    default_cache_dir,
    file_sha256,
    store_with_checksum,
    verify,
)

if TYPE_CHECKING:
    import keras

logger = logging.getLogger(__name__)

__all__ = ["CACHE_DIR_ENV", "default_cache_dir", "file_sha256", "store", "try_load"]


def try_load(model: keras.Model, path: Path) -> bool:
    """Load cached weights into ``model``; False (and a warning) if absent or unusable."""
    if not path.is_file():
        return False
    try:
        verify(path)
        model.load_weights(path)
    except Exception as exc:  # any failure means: do not trust this file
        logger.warning("Ignoring unusable weight cache %s (%s); rebuilding it", path, exc)
        return False
    return True


def store(model: keras.Model, path: Path) -> None:
    """Save ``model``'s weights to ``path`` with its checksum sidecar, atomically."""

    def write_weights(tmp: Path) -> None:
        # Keras insists on the ``.weights.h5`` suffix, so save beside tmp and move over it.
        staging = tmp.with_name(tmp.name + ".weights.h5")
        try:
            model.save_weights(staging)
            os.replace(staging, tmp)
        finally:
            staging.unlink(missing_ok=True)

    store_with_checksum(path, write_weights)
