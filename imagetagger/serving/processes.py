"""The processes ``imagetagger serve`` adopts: finding, naming and collecting them.

Ray's daemons outlive ``ray start``; as a Linux child subreaper this process adopts
them, so /proc's parent links lead from it to every process the service runs, and it
is the one to collect them when they exit.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Adopt orphaned descendants (Ray's daemons outlive ``ray start``); False off Linux."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def descendants(*roots: int) -> list[int]:
    """Every living (not zombie) descendant of ``roots``, from /proc, children first."""
    parents: dict[int, int] = {}
    zombies: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            parents[int(entry.name)] = int(fields[1])
            if fields[0] == "Z":
                zombies.add(int(entry.name))
    found: list[int] = []
    frontier = set(roots)
    while frontier:
        children = {pid for pid, parent in parents.items() if parent in frontier} - set(found)
        found.extend(sorted(children - zombies))
        frontier = children
    return found


def process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def reap() -> None:
    """Collect exited children (orphans are ours to wait for, as a subreaper)."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
