"""Serve's replica-to-replica gRPC servers listen on the node's address, not on all.

Ray Serve 2.60 starts every replica's inter-deployment gRPC server on ``[::]:0``
(``ray/serve/_private/replica.py``, ``_on_initialized``: a literal, no setting), so on
a one-node ``imagetagger serve`` each replica has a port open to the network. The
callers dial it at the replica's node IP (``RunningReplicaInfo.node_ip`` + ``port``),
so binding that address alone loses nothing, on one node (127.0.0.1) or on many.

``imagetagger serve`` has Ray import this module in every worker process before any
actor code (``RAY_preload_python_modules``, imagetagger/serving/serving_env.py): importing it
wraps ``ray._common.tls_utils.add_port_to_grpc_server``, the helper the replica binds
with (and which ``replica.py`` imports by name, hence before it is imported), so a
wildcard host becomes the node's IP. Nothing else changes: TLS and Ray's token-auth
interceptor are applied by the wrapped helper and the server as before.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import ray._common.tls_utils as tls_utils

WILDCARD_HOSTS = ("[::]", "::", "0.0.0.0", "")
_MARK = "_imagetagger_node_ip_bind"


def node_ip() -> str:
    """This worker's node IP, as the other processes of the cluster dial it."""
    import ray

    return ray._private.worker.global_worker.node_ip_address


def on_node_ip(address: str, host: Callable[[], str] | None = None) -> str:
    """``address`` (``host:port``) with a wildcard host replaced by the node's IP."""
    bind_host, _, port = address.rpartition(":")
    if bind_host not in WILDCARD_HOSTS:
        return address
    ip = (host or node_ip)()
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _wrap(original: Callable[[Any, str], int]) -> Callable[[Any, str], int]:
    if getattr(original, _MARK, False):
        return original

    def add_port_on_node_ip(server: Any, address: str) -> int:
        return original(server, on_node_ip(address))

    setattr(add_port_on_node_ip, _MARK, True)
    return add_port_on_node_ip


def install() -> None:
    """Wrap the helper where it is defined, and in ``replica.py`` if already imported."""
    tls_utils.add_port_to_grpc_server = _wrap(tls_utils.add_port_to_grpc_server)
    replica = sys.modules.get("ray.serve._private.replica")
    if replica is not None:
        replica.add_port_to_grpc_server = _wrap(replica.add_port_to_grpc_server)


install()
