"""Ray's floor gets the service's Serve config with only its code swapped."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from benchmarks.launch import (
    FLOOR_DEPLOYMENTS,
    FLOOR_IMPORT_PATH,
    SERVICE_IMPORT_PATH,
    floor_config,
    loopback_config,
    private_port,
)
from imagetagger.serving.ports import PRIVATE_PORTS
from imagetagger.serving.serving_env import isolated_serve_env
from tests.paths import REPO_ROOT

ROOT = REPO_ROOT


@pytest.fixture
def service_config() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "serve_config.yaml").read_text())


def _without_code(config: dict[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(config)
    for app in result["applications"]:
        app.pop("import_path")
        app.pop("args", None)
    return result


def test_floor_keeps_everything_but_import_path_and_args(service_config: dict[str, Any]) -> None:
    floor = floor_config(service_config, input_size=260)
    (app,) = floor["applications"]
    assert app["import_path"] == FLOOR_IMPORT_PATH
    assert app["args"] == {"input_size": 260}
    # Replicas, autoscaling, resources, queue limits, user_config, runtime_env, HTTP
    # and logging options: as the service runs.
    assert _without_code(floor) == _without_code(service_config)
    assert [d["name"] for d in app["deployments"]] == list(FLOOR_DEPLOYMENTS)


def test_floor_does_not_change_the_service_config(service_config: dict[str, Any]) -> None:
    before = copy.deepcopy(service_config)
    floor_config(service_config, input_size=224)
    assert service_config == before


def test_floor_drops_deployments_it_does_not_have(service_config: dict[str, Any]) -> None:
    service_config["applications"][0]["deployments"].append({"name": "Cache", "num_replicas": 1})
    (app,) = floor_config(service_config, input_size=260)["applications"]
    assert [d["name"] for d in app["deployments"]] == list(FLOOR_DEPLOYMENTS)


@pytest.mark.parametrize("apps", [[], [{"import_path": "other:app"}]])
def test_floor_needs_the_service_application(apps: list[dict[str, Any]]) -> None:
    with pytest.raises(ValueError, match=SERVICE_IMPORT_PATH):
        floor_config({"applications": apps}, input_size=260)


def test_floor_app_module_is_named_by_its_import_path() -> None:
    module, _, attribute = FLOOR_IMPORT_PATH.partition(":")
    source = (ROOT / (module.replace(".", "/") + ".py")).read_text()
    assert f"def {attribute}(" in source
    for name in FLOOR_DEPLOYMENTS:
        assert f'@serve.deployment(name="{name}")' in source


def test_loopback_config_listens_on_loopback_only(service_config: dict[str, Any]) -> None:
    opened = {**service_config, "http_options": {"host": "0.0.0.0", "port": 8123}}
    config = loopback_config(opened)
    assert config["http_options"] == {"host": "127.0.0.1", "port": 8123}
    assert opened["http_options"]["host"] == "0.0.0.0"  # the input is not modified


def test_every_shared_serve_port_gets_a_private_one(tmp_path: Path) -> None:
    http_port = private_port()
    env = isolated_serve_env(str(tmp_path), http_port)
    single = [
        int(env[key])
        for key in (
            "RAY_SERVE_HAPROXY_STATS_PORT",
            "RAY_SERVE_HAPROXY_METRICS_PORT",
            "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT",
            "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT",
        )
    ]
    ranges = [
        range(
            int(env[f"RAY_SERVE_DIRECT_INGRESS_MIN_{p}_PORT"]),
            int(env[f"RAY_SERVE_DIRECT_INGRESS_MAX_{p}_PORT"]) + 1,
        )
        for p in ("HTTP", "GRPC")
    ]
    every = [http_port, *single, *(port for block in ranges for port in block)]
    assert all(len(block) >= 2 for block in ranges)
    assert len(set(every)) == len(every)  # none shared, the HTTP port included
    assert all(port in PRIVATE_PORTS for port in every)
    assert env["RAY_SERVE_HAPROXY_CONFIG_FILE_LOC"].startswith(str(tmp_path))
