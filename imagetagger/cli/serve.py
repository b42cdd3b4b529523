"""``imagetagger serve``: the container's entry point, and what ``make run`` runs.

It applies the port, model and runtime overrides to a Serve config
(:mod:`imagetagger.serving.serve_config`) and serves it in the foreground on a private one-node
Ray (:mod:`imagetagger.serving.local_ray`), in Ray's high-throughput serving environment
(:mod:`imagetagger.serving.serving_env`), turning Ctrl-C and the SIGTERM of ``docker stop`` or
Kubernetes into Serve's graceful shutdown.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

from imagetagger.cli.args import add_model_options, parse_port
from imagetagger.environment import (
    DEFAULT_HTTP_PORT,
    HOST_ENV,
    PORT_ENV,
    env_host,
    env_model,
    env_port,
    env_runtime,
    write_port_file,
)
from imagetagger.serving.local_ray import default_tools
from imagetagger.serving.processes import become_subreaper
from imagetagger.serving.serve_config import (
    apply_allowed_networks,
    apply_app_args,
    apply_http,
    ingress_maxconn,
    load_serve_config,
)
from imagetagger.serving.serve_loop import serve_forever
from imagetagger.serving.serving_env import (
    LOOPBACK_HOST,
    haproxy_enabled,
    haproxy_wrapper_env,
    isolated_serve_env,
    local_serving_environment,
)

# HAProxy's admin socket lands in <folder>/<56-character node id>/admin.sock, and a
# socket path may hold 97 characters at most: the folder must be short, so it is made
# in /tmp whatever $TMPDIR says.
HAPROXY_PARENT = "/tmp" if os.path.isdir("/tmp") else None
HAPROXY_SOCKET_MAX = 97


def resolve_port(cli_port: int | None, environ: Mapping[str, str]) -> int | None:
    """``--port``, else ``$PORT`` when set and non-empty, else None (keep the file's)."""
    return cli_port if cli_port is not None else env_port(environ)


def resolve_host(cli_host: str | None, environ: Mapping[str, str], config: dict[str, Any]) -> str:
    """Where the service port listens: ``--host``, else ``$IMAGETAGGER_HOST``, else the
    config's ``http_options.host``, else 127.0.0.1 (loopback, as uvicorn and Serve
    default to; the container sets ``IMAGETAGGER_HOST=0.0.0.0``)."""
    for value in (cli_host, env_host(environ), (config.get("http_options") or {}).get("host")):
        if value and value.strip():
            return value.strip()
    return LOOPBACK_HOST


def run_foreground(argv: Sequence[str], env: Mapping[str, str] | None = None) -> int:
    """Run ``argv`` until it exits, forwarding SIGTERM/SIGINT; return its exit status.

    ``serve run`` shuts Serve down gracefully (draining replicas) on SIGINT but dies at
    once on SIGTERM, so the first signal is forwarded as SIGINT and any later one as
    SIGTERM, for an operator who does not want to wait. The child gets its own process
    group, so a terminal's Ctrl-C reaches it once, through here, not twice.
    """
    child: subprocess.Popen[bytes] | None = None
    received = 0  # signals that arrived here
    forwarded = 0  # signals passed on to the child

    def forward_pending() -> None:
        nonlocal forwarded
        while child is not None and forwarded < received:
            forwarded += 1
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signal.SIGINT if forwarded == 1 else signal.SIGTERM)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal received
        received += 1
        forward_pending()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        child = subprocess.Popen(argv, process_group=0, env=env)
        forward_pending()  # a signal that came while the child was starting
        status = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 128 - status if status < 0 else status


def run(args: argparse.Namespace) -> int:
    config = load_serve_config(args.config)
    port = resolve_port(args.port, os.environ)
    host = resolve_host(args.host, os.environ, config)
    model = args.model or env_model(os.environ)
    runtime = args.runtime or env_runtime(os.environ)
    serving = local_serving_environment(os.environ)
    # In the serving mode HAProxy alone opens the service port to `host`; Serve's
    # http_options.host is also where every ingress replica's own HTTP server and the
    # fallback proxy listen, so it stays on loopback (docs/SECURITY.md, *Ports*).
    serve_host = LOOPBACK_HOST if haproxy_enabled(serving) else host
    effective = apply_allowed_networks(
        apply_app_args(
            apply_http(config, host=serve_host, port=port),
            model=model,
            runtime=runtime,
            precision=args.precision,
        ),
        args.allow_network,
    )
    with (
        tempfile.TemporaryDirectory(prefix="imagetagger-serve-") as tmp,
        tempfile.TemporaryDirectory(prefix="ith-", dir=HAPROXY_PARENT) as haproxy_dir,
    ):
        # Ports and HAProxy files of this instance alone, so that another Serve instance
        # on the machine (tests, a second `make run`) never answers its requests.
        serving_port = http_port(effective)
        env = {**isolated_serve_env(haproxy_dir, serving_port), **serving}
        if haproxy_enabled(serving):
            maxconn = ingress_maxconn(effective)  # between its max_in_flight and Serve's limit
            env.update(haproxy_wrapper_env(haproxy_dir, host, serving, sys.executable, maxconn))
        write_port_file(env, serving_port)
        path = Path(tmp) / "serve_config.yaml"
        path.write_text(yaml.safe_dump(effective, sort_keys=False))
        if become_subreaper():
            names = [app.get("name", "default") for app in effective.get("applications") or []]
            return serve_forever(path, names, env)
        # Not Linux: `serve run` keeps a driver for the service's life, but works.
        return run_foreground([*default_tools().serve, "run", str(path)], env=env)


def http_port(config: dict[str, Any]) -> int:
    """The HTTP port Serve will listen on for ``config`` (Serve's default: 8000)."""
    return int((config.get("http_options") or {}).get("port") or DEFAULT_HTTP_PORT)


def add_parser(commands: Any) -> None:
    """Register ``serve`` on the top-level subparsers."""
    serve = commands.add_parser(
        "serve",
        help="run the Serve application in the foreground",
        description="Serve CONFIG (with the port, host, model and runtime overrides applied) "
        "on a private one-node Ray started for it, in Ray's high-throughput mode with the "
        "HAProxy ingress; Ctrl-C or SIGTERM shuts Serve down gracefully.",
    )
    serve.add_argument("--config", required=True, help="Serve config YAML")
    serve.add_argument(
        "--port",
        type=parse_port,
        default=None,
        help=f"HTTP port (default: ${PORT_ENV}, else the config's http_options.port)",
    )
    serve.add_argument(
        "--host",
        default=None,
        help=f"address the HTTP port listens on, e.g. 0.0.0.0 for every interface (default: "
        f"${HOST_ENV}, else the config's http_options.host, else {LOOPBACK_HOST}); "
        "Ray's own ports stay on loopback",
    )
    add_model_options(serve, defaults_from_env=False)
    serve.add_argument(
        "--allow-network",
        action="append",
        default=[],
        metavar="CIDR",
        help="also fetch images from this network, e.g. 127.0.0.1/32 for local files "
        "(repeatable; added to the Downloader's allowed_networks)",
    )
    serve.set_defaults(handler=run)
