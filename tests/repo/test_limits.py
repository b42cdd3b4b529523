"""imagetagger/limits.py: the chain of concurrency limits, and the configs that carry them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from imagetagger import limits
from imagetagger.settings import IngressSettings
from tests.paths import REPO_ROOT

ROOT = REPO_ROOT
SERVE_CONFIG = ROOT / "serve_config.yaml"
CONFIGS = [
    SERVE_CONFIG,
    ROOT / "configs" / "serve_gpu.yaml",
    *sorted((ROOT / "configs" / "models").glob("*.yaml")),
]
MANIFEST = ROOT / "configs" / "kuberay" / "rayservice.yaml"


def test_the_defaults_grow_outwards() -> None:
    limits.check_chain(
        limits.MAX_IN_FLIGHT, limits.HAPROXY_MAXCONN, limits.INGRESS_MAX_ONGOING_REQUESTS
    )
    assert IngressSettings().max_in_flight == limits.MAX_IN_FLIGHT
    assert limits.GRPC_MAX_MESSAGE_BYTES > limits.MAX_BODY_BYTES


@pytest.mark.parametrize(
    ("in_flight", "maxconn", "ongoing"), [(300, 300, 320), (256, 320, 320), (0, 1, 2)]
)
def test_a_broken_chain_is_refused(in_flight: int, maxconn: int, ongoing: int) -> None:
    with pytest.raises(ValueError, match="grow outwards"):
        limits.check_chain(in_flight, maxconn, ongoing)


def test_haproxy_maxconn_keeps_the_default_where_it_fits_else_goes_halfway() -> None:
    assert limits.haproxy_maxconn(256, 320) == limits.HAPROXY_MAXCONN
    assert limits.haproxy_maxconn(512, 640) == 576
    assert limits.haproxy_maxconn(128, 192) == 160
    with pytest.raises(ValueError):
        limits.haproxy_maxconn(256, 257)


def _ingresses(config: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        deployment
        for app in config["applications"]
        for deployment in app.get("deployments") or []
        if deployment["name"] == "ImageTagger"
    ]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_config_keeps_the_chain_with_the_maxconn_serve_gives_it(path: Path) -> None:
    from imagetagger.serving.serve_config import ingress_maxconn

    config = yaml.safe_load(path.read_text())
    maxconn = ingress_maxconn(config)
    assert maxconn is not None
    for ingress in _ingresses(config):
        in_flight = ingress.get("user_config", {}).get("max_in_flight", limits.MAX_IN_FLIGHT)
        limits.check_chain(in_flight, maxconn, ingress["max_ongoing_requests"])


def test_the_local_default_config_carries_the_default_limits() -> None:
    (ingress,) = _ingresses(yaml.safe_load(SERVE_CONFIG.read_text()))
    assert ingress["user_config"]["max_in_flight"] == limits.MAX_IN_FLIGHT
    assert ingress["max_ongoing_requests"] == limits.INGRESS_MAX_ONGOING_REQUESTS


def _grpc_values(node: Any) -> list[str]:
    """Every value of RAY_SERVE_REPLICA_GRPC_MAX_MESSAGE_LENGTH in a YAML tree (mappings
    and Kubernetes' name/value lists), the serveConfigV2 string parsed too."""
    key = "RAY_SERVE_REPLICA_GRPC_MAX_MESSAGE_LENGTH"
    found: list[str] = []
    if isinstance(node, dict):
        if node.get("name") == key:
            found.append(str(node.get("value")))
        if key in node:
            found.append(str(node[key]))
        for name, value in node.items():
            if name == "serveConfigV2" and isinstance(value, str):
                value = yaml.safe_load(value)
            found += _grpc_values(value)
    elif isinstance(node, list):
        for item in node:
            found += _grpc_values(item)
    return found


@pytest.mark.parametrize(
    "path", [SERVE_CONFIG, ROOT / "configs" / "serve_gpu.yaml", MANIFEST], ids=lambda p: p.name
)
def test_the_configs_carry_the_grpc_message_size(path: Path) -> None:
    values = [v for doc in yaml.safe_load_all(path.read_text()) for v in _grpc_values(doc)]
    assert values and set(values) == {str(limits.GRPC_MAX_MESSAGE_BYTES)}


def test_the_routes_read_bodies_up_to_the_ceiling() -> None:
    from imagetagger.api.routers import cloud_vision, contract, open_inference

    assert contract.MAX_UPLOAD_BODY_BYTES == limits.MAX_BODY_BYTES
    assert open_inference.MAX_OIP_BODY_BYTES == limits.MAX_BODY_BYTES
    assert cloud_vision.MAX_VISION_BODY_BYTES == limits.MAX_BODY_BYTES
