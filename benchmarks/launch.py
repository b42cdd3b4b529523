"""Start the servers a benchmark compares, one at a time, and stop them cleanly.

- the service and Ray's floor, each as ``make run`` starts the service: ``imagetagger
  serve --config <temporary copy> --port P`` (plus ``--allow-network 127.0.0.1/32``
  for the service, which fetches the loopback photos), on a new, private local Ray
  instance (its own ``RAY_TMPDIR``, no ``RAY_ADDRESS``: never a cluster already
  running), with HAProxy's files and every port Serve would share with another
  instance on the machine private to the run (:func:`isolated_serve_env`); ready
  when ``GET /`` answers 200 and every process listening on its port is the run's
  own; stopped with SIGINT (Ctrl-C);
- ``litert_server.py`` (the one-process LiteRT peer) and ``naive_server.py`` (the
  TensorFlow one), as plain processes, stopped with SIGTERM.

Every process carries the run's marker (:mod:`benchmarks.procs`), so whatever a server
leaves behind is found and ended after it stops, whichever way ``imagetagger serve``
runs Ray inside (``serve run``, or ``ray start`` + ``serve deploy``).
"""

from __future__ import annotations

import copy
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from benchmarks.photos import LOOPBACK, wait_until_ok
from benchmarks.procs import (
    MARKER,
    kill_marked,
    listening_pids,
    log_tail,
    marked_pids,
    process_name,
    stop_process,
)
from imagetagger.models.runtimes import RuntimeOptions
from imagetagger.serving.ports import free_ports
from imagetagger.serving.serve_config import apply_http, load_serve_config
from imagetagger.serving.serving_env import isolated_serve_env

ROOT = Path(__file__).resolve().parent.parent
SERVICE_IMPORT_PATH = "deployments.app:build_app"
FLOOR_IMPORT_PATH = "benchmarks.floor_app:build_app"
FLOOR_DEPLOYMENTS = ("ImageTagger", "Downloader", "ModelDeployment")
START_TIMEOUT_S = 600
STOP_TIMEOUT_S = 90


@dataclass
class RunningServer:
    """A server under test: where it answers and how to find its processes."""

    name: str
    base_url: str
    token: str
    process: subprocess.Popen
    log_path: Path
    stop_s: float | None = None  # seconds from the stop signal to its exit, once stopped
    leftovers: tuple[str, ...] = ()  # processes that had to be killed after it stopped


@contextmanager
def server_process(
    name: str,
    command: Sequence[str],
    port: int,
    workdir: Path,
    env: Mapping[str, str],
    stop_signal: int,
) -> Iterator[RunningServer]:
    """Start ``command`` (marked, in its own session), wait for ``GET /``, stop it after.

    ``env`` is the whole environment of the command; the run's marker is added.
    """
    token = uuid.uuid4().hex
    log_path = workdir / f"{name}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            list(command),
            cwd=ROOT,
            env={**env, MARKER: token},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C on the terminal reaches only the bench
        )
    server = RunningServer(name, f"http://{LOOPBACK}:{port}", token, process, log_path)
    try:
        try:
            wait_until_ok(server.base_url + "/", timeout_s=START_TIMEOUT_S, process=process)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"{name} did not start: {exc}\n{log_tail(log_path)}") from exc
        check_listeners(name, port, token)
        yield server
    finally:
        server.stop_s = stop_process(process, stop_signal, wait_s=STOP_TIMEOUT_S)
        server.leftovers = tuple(kill_marked(token))
        print(f"  {name} stopped in {server.stop_s:.1f} s", flush=True)
        if server.leftovers:
            print(f"  killed leftover {name} processes: {list(server.leftovers)}", flush=True)


def check_listeners(name: str, port: int, token: str) -> None:
    """Fail unless every process listening on ``port`` belongs to this run.

    On a machine shared with other people's servers, something else may hold the port
    (HAProxy shares ports with SO_REUSEPORT), and its answers must not be measured.
    """
    listeners = listening_pids(port)
    ours = set(marked_pids(token))
    if not listeners or not listeners <= ours:
        others = {pid: process_name(pid) for pid in listeners - ours}
        raise RuntimeError(
            f"{name}: port {port} is not ours alone (listeners outside this run: {others}, "
            f"ours: {sorted(listeners & ours)})"
        )


def private_port() -> int:
    """A free port in the private range, where the kernel's ``bind(0)`` and Ray's
    workers and replicas do not take ports on their own."""
    return free_ports(1)[0]


# --------------------------------------------------------------------------- configs


load_config = load_serve_config  # the library's reader, as `imagetagger serve` reads it


def loopback_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a Serve config that listens on 127.0.0.1 only (the port is a CLI flag)."""
    return apply_http(dict(config), host=LOOPBACK)


def service_app(config: Mapping[str, Any]) -> dict[str, Any]:
    apps = [
        app
        for app in config.get("applications") or []
        if app.get("import_path") == SERVICE_IMPORT_PATH
    ]
    if len(apps) != 1:
        raise ValueError(f"expected one application of {SERVICE_IMPORT_PATH}, found {len(apps)}")
    return apps[0]


def floor_config(config: Mapping[str, Any], *, input_size: int) -> dict[str, Any]:
    """The service's Serve config with Ray's floor in place of the service's code.

    Everything that shapes how Serve runs stays (HTTP and logging options, the app's
    name, route and runtime_env, every deployment's replicas, autoscaling, resources,
    queue limits and user_config, which the floor's classes accept and ignore); only
    ``import_path`` and ``args`` change. Deployments the floor does not have are dropped.
    """
    result = copy.deepcopy(dict(config))
    app = service_app(result)
    app["import_path"] = FLOOR_IMPORT_PATH
    app["args"] = {"input_size": input_size}
    deployments = app.get("deployments") or []
    app["deployments"] = [d for d in deployments if d.get("name") in FLOOR_DEPLOYMENTS]
    return result


def served_options(config: Mapping[str, Any], precision: str | None = None) -> RuntimeOptions:
    """The runtime options the service's application args ask for (with ``precision``)."""
    from imagetagger.models.options import ModelOptions  # what the app validates its args with

    args = dict(service_app(config).get("args") or {})
    if precision is not None:
        args["precision"] = precision
    return ModelOptions.model_validate(args).runtime_options()


def _imagetagger_executable() -> str:
    """The ``imagetagger`` CLI of this environment (what ``make run`` runs)."""
    sibling = Path(sys.executable).with_name("imagetagger")
    if sibling.is_file():
        return str(sibling)
    found = shutil.which("imagetagger")
    if found is None:
        raise FileNotFoundError("the imagetagger CLI is not installed in this environment")
    return found


@contextmanager
def serve_app(
    name: str,
    config: Mapping[str, Any],
    workdir: Path,
    *,
    cli_args: Sequence[str] = (),
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[RunningServer]:
    """``imagetagger serve`` of ``config`` on a new, private local Ray instance."""
    port = private_port()
    config_path = workdir / f"{name}-serve-config.yaml"
    config_path.write_text(yaml.safe_dump(loopback_config(config), sort_keys=False))
    ray_tmp = Path(tempfile.mkdtemp(prefix="itb-", dir="/tmp"))  # short: Ray's socket paths
    haproxy_dir = ray_tmp / "haproxy"
    haproxy_dir.mkdir()
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    env.update(isolated_serve_env(str(haproxy_dir), port))
    env["RAY_TMPDIR"] = str(ray_tmp)
    env.update(extra_env or {})
    command = [_imagetagger_executable(), "serve", "--config", str(config_path)]
    command += ["--port", str(port), *cli_args]
    try:
        with server_process(name, command, port, workdir, env, signal.SIGINT) as server:
            yield server
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


@contextmanager
def run_service(
    config_source: Path,
    workdir: Path,
    *,
    model: str | None = None,
    precision: str | None = None,
    extra_env: Mapping[str, str] | None = None,
    name: str = "service",
) -> Iterator[RunningServer]:
    """The service, as ``make run`` starts it, allowed to fetch the loopback photos."""
    cli_args = ["--allow-network", f"{LOOPBACK}/32"]
    if model is not None:
        cli_args += ["--model", model]
    if precision is not None:
        cli_args += ["--precision", precision]
    with serve_app(
        name, load_config(config_source), workdir, cli_args=cli_args, extra_env=extra_env
    ) as server:
        yield server


@contextmanager
def run_floor(
    config_source: Path,
    workdir: Path,
    *,
    input_size: int,
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[RunningServer]:
    """Ray's floor in the service's deployment options (the floor fetches nothing)."""
    python_path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {"PYTHONPATH": python_path, **(extra_env or {})}  # workers import benchmarks.*
    config = floor_config(load_config(config_source), input_size=input_size)
    with serve_app("floor", config, workdir, extra_env=env) as server:
        yield server


def _plain_env() -> dict[str, str]:
    return dict(os.environ)


@contextmanager
def run_peer(model: str, options: RuntimeOptions, workdir: Path) -> Iterator[RunningServer]:
    """``litert_server.py`` on the service's runtime options (precision, threads, pool).

    Not ``solo_threads``: choosing an interpreter by the replica's load is the serving
    layer's work, which the peer, a user's fixed pool, does not do (as it does not decode
    at a reduced scale).
    """
    port = private_port()
    command = [sys.executable, str(ROOT / "benchmarks" / "litert_server.py")]
    command += ["--host", LOOPBACK, "--port", str(port), "--model", model]
    command += ["--precision", options.precision]
    command += ["--threads", str(options.intra_op_threads)]
    command += ["--interpreters", str(options.interpreters)]
    with server_process("peer", command, port, workdir, _plain_env(), signal.SIGTERM) as server:
        yield server


@contextmanager
def run_naive(model: str, workdir: Path) -> Iterator[RunningServer]:
    """``naive_server.py``: TensorFlow, batch 1, what a user would write first."""
    port = private_port()
    command = [sys.executable, str(ROOT / "benchmarks" / "naive_server.py")]
    command += ["--host", LOOPBACK, "--port", str(port), "--model", model]
    with server_process("naive", command, port, workdir, _plain_env(), signal.SIGTERM) as server:
        yield server
