"""What this host gives Ray: the memory limit, /dev/shm, and the object store that fits.

Ray sizes its object store at 30% of memory; the store lives in /dev/shm, and a
container's /dev/shm is often smaller (64 MiB by default in Docker). Ray needs 75 MiB.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path

OBJECT_STORE_FRACTION = 0.3
SHM_FRACTION = 0.9
MIN_OBJECT_STORE_BYTES = 80 * 2**20


def memory_limit_bytes() -> int:
    """The memory this process may use: the cgroup's limit when set, else the RAM."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        with contextlib.suppress(OSError, ValueError):
            limit = int(Path(path).read_text().strip())
            if limit < 2**60:  # "max" fails int(); cgroup v1 "unlimited" is ~2**63
                return limit
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def object_store_bytes(memory_bytes: int, shm_free_bytes: int | None) -> int | None:
    """The object store that fits both the memory limit and /dev/shm (None: Ray's default).

    Ray's default ignores /dev/shm's size and falls back to a slow store in /tmp when it
    does not fit; sized to the smaller of the two, it stays in shared memory.
    """
    wanted = int(memory_bytes * OBJECT_STORE_FRACTION)
    if shm_free_bytes is not None:
        wanted = min(wanted, int(shm_free_bytes * SHM_FRACTION))
    return wanted if wanted >= MIN_OBJECT_STORE_BYTES else None


def shm_free_bytes() -> int | None:
    try:
        stats = os.statvfs("/dev/shm")
    except OSError:
        return None
    return stats.f_bavail * stats.f_frsize


def auth_token(environ: Mapping[str, str]) -> str | None:
    """Ray's cluster token, looked up as Ray does: the variable, its file, ~/.ray."""
    if environ.get("RAY_AUTH_TOKEN"):
        return environ["RAY_AUTH_TOKEN"].strip()
    path = Path(environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    try:
        return path.read_text().strip() or None
    except OSError:
        return None
