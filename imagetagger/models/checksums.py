"""Checksummed, atomically written cache files (no TensorFlow or Keras import).

Each cache file has a ``.sha256`` sidecar written after it, so a truncated, corrupt or
half-written file is detected and rebuilt instead of trusted. Writes go to a temporary
file and are renamed into place, so replicas starting together never read each
other's partial files. Used for converted Keras weights and LiteRT flatbuffers alike.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from imagetagger.environment import CACHE_DIR_ENV


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


def sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def verify(path: Path) -> None:
    """Raise ``ValueError`` unless ``path`` and its sidecar exist and agree."""
    check = sidecar(path)
    if not path.is_file() or not check.is_file():
        raise ValueError("missing")
    if file_sha256(path) != check.read_text().strip():
        raise ValueError("checksum mismatch")


def atomic_write(target: Path, write: Callable[[Path], None]) -> None:
    """Let ``write`` fill a temporary file beside ``target``, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; other users (e.g. a container's) may read it
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def store_with_checksum(target: Path, write: Callable[[Path], None]) -> None:
    """Write ``target`` atomically, then its checksum sidecar (the commit point)."""
    atomic_write(target, write)
    digest = file_sha256(target)
    atomic_write(sidecar(target), lambda tmp: tmp.write_text(digest + "\n"))
