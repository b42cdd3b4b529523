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

from imagetagger.environment import DEFAULT_HTTP_PORT, env_port, written_port

# Below the HEALTHCHECK's own --timeout, so this process reports before it is killed.
TIMEOUT_S = 4.0


def probe_port(environ: Mapping[str, str]) -> int:
    """The port written to ``$IMAGETAGGER_PORT_FILE``, else ``$PORT``, else 8000."""
    written = written_port(environ)
    if written is not None:
        return written
    try:
        return env_port(environ) or DEFAULT_HTTP_PORT
    except ValueError:  # serve refuses to start on such a $PORT; probe the default
        return DEFAULT_HTTP_PORT


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
