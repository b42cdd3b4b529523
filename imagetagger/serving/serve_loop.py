"""``imagetagger serve``'s life: start Ray, deploy, serve until a signal, stop gracefully.

The Ray instance itself is :class:`imagetagger.serving.local_ray.LocalRay`; this is the
loop around it, and what the signals mean: the first drains, a second one hurries.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from imagetagger.serving.local_ray import LocalRay, ServeFailed
from imagetagger.serving.serve_logs import ServeLogTail

# How often the idle loop checks that Ray's daemons live (a scan of /proc): Ray dying
# is reported within this; a signal still ends the wait at once.
ALIVE_CHECK_S = 5.0


class _Hurry(Exception):
    """A second signal during the graceful shutdown: end the daemons now."""


def serve_forever(
    config_path: Path,
    app_names: Sequence[str],
    env: dict[str, str],
    *,
    on_ready: Callable[[], None] | None = None,
    out: TextIO = sys.stderr,
) -> int:
    """Start Ray, deploy, serve until SIGINT/SIGTERM, stop gracefully; the exit status.

    A second signal skips the graceful part: the daemons are ended at once.
    """
    stop = threading.Event()
    signals = 0
    draining = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal signals
        signals += 1
        stop.set()
        if draining and signals > 1:
            raise _Hurry

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    ray = LocalRay(env=env, out=out)
    tail: ServeLogTail | None = None
    status = 0
    try:
        ray.start()
        if ray.session_dir is not None:
            tail = ServeLogTail(ray.session_dir / "logs", out)
            tail.start()
        if not stop.is_set():
            ray.deploy(config_path)
        if ray.wait_running(app_names, stop):
            print("imagetagger serve: ready", file=out, flush=True)
            if on_ready is not None:
                on_ready()
        while not stop.wait(ALIVE_CHECK_S):
            if not ray.alive():
                raise ServeFailed("Ray's daemons exited unexpectedly")
    except ServeFailed as exc:
        print(f"imagetagger serve: {exc}", file=out, flush=True)
        status = 1
    finally:
        try:
            draining = True
            if signals < 2 and ray.dashboard_port and ray.alive():
                print("imagetagger serve: shutting down", file=out, flush=True)
                ray.shutdown_serve()
        except _Hurry:
            print("imagetagger serve: second signal, stopping at once", file=out, flush=True)
        finally:
            draining = False
            if tail is not None:
                tail.poll()
                tail.stopping.set()
            ray.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    return status
