"""A checksummed on-disk cache of converted Keras weights.

Converting the torch weights happens once; later starts load the cached
``.weights.h5``. Each cache file has a ``.sha256`` sidecar written after it, so a
truncated, corrupt or half-written file is detected and rebuilt instead of trusted.
Writes go to a temporary file and are renamed into place, so replicas starting
together never read each other's partial files.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import keras

logger = logging.getLogger(__name__)

CACHE_DIR_ENV = "IMAGETAGGER_CACHE_DIR"


def default_cache_dir() -> Path:
    """``$IMAGETAGGER_CACHE_DIR`` if set, else ``~/.cache/imagetagger``."""
    configured = os.environ.get(CACHE_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "imagetagger"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def try_load(model: keras.Model, path: Path) -> bool:
    """Load cached weights into ``model``; False (and a warning) if absent or unusable."""
    sidecar = _sidecar(path)
    if not path.is_file() or not sidecar.is_file():
        return False
    try:
        expected = sidecar.read_text().strip()
        if file_sha256(path) != expected:
            raise ValueError("checksum mismatch")
        model.load_weights(path)
    except Exception as exc:  # any failure means: do not trust this file
        logger.warning("Ignoring unusable weight cache %s (%s); rebuilding it", path, exc)
        return False
    return True


def _atomic_write(target: Path, write: Callable[[Path], None]) -> None:
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; other users (e.g. a container's) may read it
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def store(model: keras.Model, path: Path) -> None:
    """Save ``model``'s weights to ``path`` with its checksum sidecar, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    digest: list[str] = []

    def write_weights(tmp: Path) -> None:
        # Keras insists on the ``.weights.h5`` suffix, so save beside tmp and move over it.
        staging = tmp.with_name(tmp.name + ".weights.h5")
        try:
            model.save_weights(staging)
            os.replace(staging, tmp)
        finally:
            staging.unlink(missing_ok=True)
        digest.append(file_sha256(tmp))

    _atomic_write(path, write_weights)
    _atomic_write(_sidecar(path), lambda tmp: tmp.write_text(digest[0] + "\n"))
