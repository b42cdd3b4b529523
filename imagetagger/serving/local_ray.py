"""A private one-node Ray for ``imagetagger serve``: started, deployed to, stopped.

Why not ``serve run``: its driver stays alive for the service's whole life (~130 MiB
PSS), and ``ray start --block`` is heavier still (~170 MiB). Here ``ray start`` starts
Ray's daemons without the three a one-node service never uses (the autoscaler
monitor, the log monitor that feeds drivers, and the Ray Client server, ended once
started), a driver that
exits deploys the config (``serve run --non-blocking``), and this process (small: it
never imports Ray) adopts the daemons as a Linux child subreaper, prints Serve's log
lines, and on SIGINT/SIGTERM shuts Serve down gracefully (the proxies and replicas
drain) before it ends the daemons it adopted, and only those.

Ray's own ports stay on loopback because the environment (imagetagger/serving/serving_env.py,
``LOCAL_SERVING_ENV``) puts Ray in its single-node mode, where the node IP stays
127.0.0.1: ``--node-ip-address 127.0.0.1`` alone is replaced by the host's address and
every Ray server then listens on all interfaces. Serve's replica-to-replica gRPC and
HAProxy's stats and exporter need more (deployments/node_ip_bind.py,
imagetagger/serving/haproxy.py); the service port is the only one that may open to the network,
where ``imagetagger serve --host`` asks (docs/SECURITY.md, *Ports*). The cluster uses
Ray's token authentication (``RAY_AUTH_MODE=token``; a token is made once if there is none).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from imagetagger.serving.host_resources import (
    auth_token,
    memory_limit_bytes,
    object_store_bytes,
    shm_free_bytes,
)
from imagetagger.serving.ports import port_or_free
from imagetagger.serving.processes import descendants, process_name, reap

DEFAULT_GCS_PORT = 6379
DEFAULT_DASHBOARD_PORT = 8265
DEPLOY_TIMEOUT_S = 600.0
SHUTDOWN_TIMEOUT_S = 20.0
KILL_GRACE_S = 5.0


class ServeFailed(RuntimeError):
    """Ray did not start, the application did not deploy, or Ray died while serving."""


@dataclass(frozen=True)
class Tools:
    """The commands :class:`LocalRay` runs (the tests put stand-ins here)."""

    ray: list[str]
    serve: list[str]
    control: list[str]


def default_tools() -> Tools:
    """Ray's CLIs installed beside this interpreter (else on PATH), and our drivers."""
    bin_dir = Path(sys.executable).parent

    def tool(name: str) -> list[str]:
        sibling = bin_dir / name
        return [str(sibling) if sibling.is_file() else name]

    return Tools(tool("ray"), tool("serve"), [sys.executable, "-m", "deployments.control"])


@dataclass
class LocalRay:
    """One private Ray instance on this machine, for the lifetime of ``imagetagger serve``."""

    env: dict[str, str]
    tools: Tools = field(default_factory=lambda: default_tools())
    gcs_port: int = 0
    dashboard_port: int = 0
    session_dir: Path | None = None
    out: TextIO = sys.stderr

    def _run(self, argv: Sequence[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            process_group=0,  # a terminal's Ctrl-C reaches only `imagetagger serve`
        )

    @property
    def gcs_address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def ensure_token(self) -> None:
        """Token authentication needs a token; make Ray's default one if there is none."""
        if auth_token(self.env) is None:
            done = self._run([*self.tools.ray, "get-auth-token", "--generate"], 60)
            if done.returncode != 0:
                raise ServeFailed(f"could not create Ray's auth token: {done.stderr.strip()}")

    def start(self) -> None:
        """``ray start --head`` on loopback, with only the daemons a service needs.

        Ray's usual ports (GCS 6379, dashboard 8265) when free; if another instance
        takes one between the check and the start, a second try uses free ports.
        """
        self.ensure_token()
        for attempt in range(2):
            default = attempt == 0
            self.gcs_port = port_or_free(DEFAULT_GCS_PORT if default else None)
            self.dashboard_port = port_or_free(DEFAULT_DASHBOARD_PORT if default else None)
            done = self._run(self._start_argv(), 180)
            if done.returncode == 0:
                break
            self.stop()  # whatever the failed start left
        else:
            raise ServeFailed(f"`ray start` failed:\n{done.stdout}{done.stderr}")
        self._end_ray_client_server()
        self.session_dir = self._find_session_dir()
        print(
            f"imagetagger serve: Ray started (dashboard {self.dashboard_url}, "
            f"logs {self.session_dir / 'logs' if self.session_dir else '?'})",
            file=self.out,
            flush=True,
        )

    def _start_argv(self) -> list[str]:
        argv = [
            *self.tools.ray,
            "start",
            "--head",
            "--node-ip-address=127.0.0.1",
            f"--port={self.gcs_port}",
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={self.dashboard_port}",
            "--no-monitor",
            "--include-log-monitor=false",
            "--disable-usage-stats",
        ]
        store = object_store_bytes(memory_limit_bytes(), shm_free_bytes())
        if store is not None:
            argv.append(f"--object-store-memory={store}")
        return argv

    def _end_ray_client_server(self) -> None:
        """End the Ray Client server (``ray://``), which ``ray start`` cannot leave out.

        Nothing here uses it (``imagetagger tag --address`` joins through the GCS), and
        it holds ~50 MiB. Nothing in Ray restarts it.
        """
        for pid in descendants(os.getpid()):
            with contextlib.suppress(OSError):
                if b"ray.util.client.server" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGTERM)

    def _find_session_dir(self) -> Path | None:
        """The session folder of this instance, from its GCS server's ``--log_dir``."""
        for pid in descendants(os.getpid()):
            if process_name(pid) != "gcs_server":
                continue
            with contextlib.suppress(OSError):
                for arg in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"):
                    if arg.startswith(b"--log_dir="):
                        return Path(arg.split(b"=", 1)[1].decode()).parent
        return None

    def deploy(self, config_path: Path) -> None:
        """Deploy ``config_path`` with a driver that exits once the config is submitted."""
        argv = [
            *self.tools.serve,
            "run",
            "--non-blocking",
            f"--address={self.gcs_address}",
            str(config_path),
        ]
        done = self._run(argv, 300)
        if done.returncode != 0:
            raise ServeFailed(f"`serve run --non-blocking` failed:\n{done.stdout}{done.stderr}")

    def _control(self, *args: str) -> list[str]:
        return [*self.tools.control, args[0], self.gcs_address, *args[1:]]

    def wait_running(
        self, names: Sequence[str], stop: threading.Event, timeout_s: float = DEPLOY_TIMEOUT_S
    ) -> bool:
        """True once every application is RUNNING; False if ``stop`` was set first."""
        argv = self._control("wait", *names, f"--timeout={timeout_s}")
        waiter = subprocess.Popen(
            argv, env=self.env, stderr=subprocess.PIPE, text=True, process_group=0
        )
        try:
            while waiter.poll() is None:
                if stop.wait(0.5):
                    return False
                if not self.alive():
                    raise ServeFailed("Ray's daemons exited while the application was deploying")
        finally:
            if waiter.poll() is None:
                waiter.kill()
            _, errors = waiter.communicate()
        if waiter.returncode != 0:
            raise ServeFailed(
                errors.strip().splitlines()[-1] if errors.strip() else "deploy failed"
            )
        return True

    def alive(self) -> bool:
        """Are Ray's GCS and raylet (adopted by this process) still running?"""
        names = {process_name(pid) for pid in descendants(os.getpid())}
        return "gcs_server" in names and "raylet" in names

    def shutdown_serve(self) -> None:
        """Serve's graceful shutdown: stop taking requests, drain, stop the replicas."""
        try:
            done = self._run(self._control("shutdown"), SHUTDOWN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            print("imagetagger serve: Serve's shutdown timed out", file=self.out, flush=True)
            return
        if done.returncode != 0:
            print(f"imagetagger serve: Serve's shutdown: {done.stderr.strip()}", file=self.out)

    def stop(self, grace_s: float = KILL_GRACE_S) -> None:
        """End every process this one adopted or started: the raylet first, then the rest.

        The raylet ends its workers and agents itself; the GCS must still be up while
        it does, or it waits for the GCS instead of exiting. SIGKILL for what is left.
        """
        raylets = [pid for pid in descendants(os.getpid()) if process_name(pid) == "raylet"]
        self._terminate(raylets, grace_s / 2)
        self._terminate(descendants(os.getpid()), grace_s / 2)
        stuck = descendants(os.getpid())
        if not stuck:
            return
        names = ", ".join(sorted({process_name(pid) for pid in stuck}))
        print(f"imagetagger serve: killing what did not stop in time: {names}", file=self.out)
        for pid in stuck:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
        reap()

    @staticmethod
    def _terminate(pids: Sequence[int], wait_s: float) -> None:
        """SIGTERM ``pids`` and wait up to ``wait_s`` for them to exit."""
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            reap()
            living = set(descendants(os.getpid()))
            if not living.intersection(pids):
                return
            time.sleep(0.05)
