"""The container's HEALTHCHECK: does Serve's proxy answer on the port it really uses?

``imagetagger serve`` writes the HTTP port it serves on to ``$IMAGETAGGER_PORT_FILE``
(``--port``, ``$PORT`` or the config's), so a probe follows ``serve --port 8124`` too;
without that file it falls back to ``$PORT``, then 8000. Serve's proxy answers
``/-/healthz`` with 200 once the application's routes are up and 503 while draining.

    python -m imagetagger.healthcheck        # exit 0 healthy, 1 not
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

PORT_FILE_ENV = "IMAGETAGGER_PORT_FILE"
PORT_ENV = "PORT"
DEFAULT_PORT = 8000
# Below the HEALTHCHECK's own --timeout, so this process reports before it is killed.
TIMEOUT_S = 4.0


def _port(text: str) -> int | None:
    text = text.strip()
    if not text.isdigit() or not 0 < int(text) < 65536:
        return None
    return int(text)


def probe_port(environ: Mapping[str, str]) -> int:
    """The port written to ``$IMAGETAGGER_PORT_FILE``, else ``$PORT``, else 8000."""
    path = environ.get(PORT_FILE_ENV, "").strip()
    if path:
        try:
            written = _port(Path(path).read_text())
        except OSError:
            written = None  # not written yet: serve is still starting, or an older serve
        if written is not None:
            return written
    return _port(environ.get(PORT_ENV, "")) or DEFAULT_PORT


def healthy(port: int, host: str = "127.0.0.1", timeout_s: float = TIMEOUT_S) -> bool:
    """True when ``/-/healthz`` on ``host:port`` answers 200."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/-/healthz", timeout=timeout_s) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def main() -> int:
    port = probe_port(os.environ)
    if healthy(port):
        return 0
    print(f"unhealthy: no 200 from http://127.0.0.1:{port}/-/healthz", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
