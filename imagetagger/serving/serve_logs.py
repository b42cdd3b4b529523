"""Serve's log lines on ``imagetagger serve``'s own output."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import TextIO


class ServeLogTail(threading.Thread):
    """Print new lines of Serve's log files (controller, proxy, replicas) as they come.

    No driver streams logs here (Ray's log monitor is off), so this is what makes
    ``make run`` and ``docker logs`` show the request log.
    """

    def __init__(self, logs_dir: Path, out: TextIO, interval_s: float = 1.0) -> None:
        super().__init__(name="serve-log-tail", daemon=True)
        self._dir = logs_dir / "serve"
        self._out = out
        self._interval_s = interval_s
        self._offsets: dict[Path, int] = {}
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(self._interval_s):
            self.poll()

    def poll(self) -> None:
        with contextlib.suppress(OSError):
            for path in sorted(self._dir.glob("*.log")):
                offset = self._offsets.get(path, 0)
                with contextlib.suppress(OSError):
                    if path.stat().st_size <= offset:
                        continue
                with contextlib.suppress(OSError), path.open("rb") as file:
                    file.seek(offset)
                    chunk = file.read()
                    end = chunk.rfind(b"\n") + 1  # whole lines only
                    if end:
                        self._out.write(chunk[:end].decode("utf-8", "replace"))
                        self._out.flush()
                    self._offsets[path] = offset + end
