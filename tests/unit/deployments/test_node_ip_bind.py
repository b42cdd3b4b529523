"""deployments.node_ip_bind: replica gRPC servers bind the node's IP, not every interface.

The module patches one Ray helper by name, so these tests also pin what it relies on in
Ray's source: a Ray upgrade that moves the bind fails here, not silently on a network.
The listening-socket service test checks the running service.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray._common.tls_utils as tls_utils


@pytest.fixture
def node_ip_bind() -> Iterator[Any]:
    """The module imported (which installs it), and Ray's helper restored afterwards."""
    original = tls_utils.add_port_to_grpc_server
    sys.modules.pop("deployments.node_ip_bind", None)
    module = importlib.import_module("deployments.node_ip_bind")
    try:
        yield module
    finally:
        tls_utils.add_port_to_grpc_server = original
        sys.modules.pop("deployments.node_ip_bind", None)


@pytest.mark.parametrize(
    ("address", "node_ip", "expected"),
    [
        ("[::]:0", "127.0.0.1", "127.0.0.1:0"),
        ("0.0.0.0:9000", "10.0.0.5", "10.0.0.5:9000"),
        ("[::]:0", "fd00::7", "[fd00::7]:0"),
        ("127.0.0.1:5000", "10.0.0.5", "127.0.0.1:5000"),  # an explicit host stays
        ("[::1]:5000", "10.0.0.5", "[::1]:5000"),
    ],
)
def test_wildcard_hosts_become_the_node_ip(
    node_ip_bind: Any, address: str, node_ip: str, expected: str
) -> None:
    assert node_ip_bind.on_node_ip(address, host=lambda: node_ip) == expected


def test_install_wraps_ray_helper_once(node_ip_bind: Any, monkeypatch) -> None:
    calls: list[str] = []
    wrapped = node_ip_bind._wrap(lambda server, address: calls.append(address) or 1)
    assert node_ip_bind._wrap(wrapped) is wrapped
    monkeypatch.setattr(node_ip_bind, "node_ip", lambda: "127.0.0.1")
    assert wrapped(object(), "[::]:0") == 1
    assert calls == ["127.0.0.1:0"]
    assert getattr(tls_utils.add_port_to_grpc_server, node_ip_bind._MARK)
    node_ip_bind.install()  # again: still one wrapper
    inner = tls_utils.add_port_to_grpc_server
    node_ip_bind.install()
    assert tls_utils.add_port_to_grpc_server is inner


def test_ray_replica_still_binds_through_the_patched_helper() -> None:
    """What the patch relies on in Ray 2.60's replica.py (read, not imported)."""
    spec = importlib.util.find_spec("ray.serve._private.replica")
    assert spec is not None and spec.origin is not None
    source = Path(spec.origin).read_text()
    assert "from ray._common.tls_utils import add_port_to_grpc_server" in source
    assert 'add_port_to_grpc_server(self._server, "[::]:0")' in source


def test_the_serving_env_preloads_it() -> None:
    from imagetagger.serving.serving_env import LOCAL_SERVING_ENV

    assert LOCAL_SERVING_ENV["RAY_preload_python_modules"] == "deployments.node_ip_bind"
    assert importlib.util.find_spec("deployments.node_ip_bind") is not None
