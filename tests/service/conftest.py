"""One local Ray cluster and one deployed imagetagger per test session.

The application is deployed from the real ``serve_config.yaml`` the way ``serve run``
deploys it (same schema, same builder, same per-deployment options), with two test
changes: HTTP on a free loopback port, and ``allowed_networks`` opened for the image
server on 127.0.0.2 (127.0.0.1 stays forbidden, for the SSRF tests).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests import images, servers

ROOT = Path(__file__).resolve().parents[2]
IMAGE_HOST = "127.0.0.2"
DEPLOY_TIMEOUT_S = 300


@dataclass
class Service:
    base_url: str
    images: servers.LoopbackServer
    metrics_url: str

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(self.base_url + path, timeout=60, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.post(self.base_url + path, timeout=60, **kwargs)

    def predict(self, url: str, **params: Any) -> requests.Response:
        return self.get("/predictions", params={"url": url, **params})

    def image_url(self, name: str) -> str:
        return self.images.url(f"/{name}")


def test_serve_config(port: int, allowed_networks: list[str]) -> dict[str, Any]:
    """serve_config.yaml with the test's port and allowed networks."""
    config = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    config["http_options"] = {**config.get("http_options", {}), "host": "127.0.0.1", "port": port}
    for app in config["applications"]:
        for deployment in app["deployments"]:
            if deployment["name"] == "Downloader":
                deployment.setdefault("user_config", {})["allowed_networks"] = allowed_networks
    return config


test_serve_config.__test__ = False  # a helper, not a test


def photo_routes() -> dict[str, servers.Handler]:
    data = ROOT / "tests" / "data"
    return {
        "/chelsea.jpg": servers.respond((data / "chelsea.jpg").read_bytes(), "image/jpeg"),
        "/coffee.jpg": servers.respond((data / "coffee.jpg").read_bytes(), "image/jpeg"),
        "/chelsea.png": servers.respond(images.png_bytes(images.photo()), "image/png"),
        "/text.txt": servers.respond(b"just some text\n", "text/plain"),
        "/page.html": servers.respond(b"<!doctype html><html><body>hi</body></html>", "text/html"),
        "/html-as-jpeg.jpg": servers.respond(b"<html></html>", "image/jpeg"),
        "/truncated.jpg": servers.respond(
            images.truncated((data / "chelsea.jpg").read_bytes()), "image/jpeg"
        ),
        "/empty.jpg": servers.respond(b"", "image/jpeg"),
        "/missing.jpg": servers.status(404),
        "/broken.jpg": servers.status(500),
        "/loop": servers.redirect("/loop"),
        "/to-chelsea": servers.redirect("/chelsea.jpg"),
    }


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[str]:
    """A local 2-CPU cluster; yields its Prometheus metrics URL."""
    import ray
    from ray import serve

    metrics_port = servers.unused_port("127.0.0.1")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        namespace="serve",
        log_to_driver=False,
        _metrics_export_port=metrics_port,
        _system_config={"metrics_report_interval_ms": 1000},  # metrics tests wait less
    )
    try:
        yield f"http://127.0.0.1:{metrics_port}/metrics"
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.fixture(scope="session")
def image_server() -> Iterator[servers.LoopbackServer]:
    with servers.LoopbackServer(IMAGE_HOST, photo_routes()) as server:
        yield server


@pytest.fixture(scope="session")
def service(ray_cluster: str, image_server: servers.LoopbackServer) -> Service:
    from ray.serve._private.api import serve_start
    from ray.serve.schema import ServeDeploySchema

    port = servers.unused_port("127.0.0.1")
    config = ServeDeploySchema.model_validate(test_serve_config(port, [f"{IMAGE_HOST}/32"]))
    # What `serve run serve_config.yaml` does, on the session's cluster.
    client = serve_start(
        http_options=config.http_options.model_dump(), proxy_location=config.proxy_location
    )
    client.deploy_apps(config, _blocking=False)
    base_url = f"http://127.0.0.1:{port}"
    wait_until_running(base_url)
    return Service(base_url=base_url, images=image_server, metrics_url=ray_cluster)


def wait_until_running(base_url: str) -> None:
    from ray import serve

    deadline = time.monotonic() + DEPLOY_TIMEOUT_S
    while time.monotonic() < deadline:
        status = serve.status().applications.get("imagetagger")
        if status is not None and status.status == "RUNNING":
            try:
                if requests.get(base_url + "/", timeout=5).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
        if status is not None and status.status == "DEPLOY_FAILED":
            raise RuntimeError(f"deploy failed: {status.message}")
        time.sleep(1)
    raise TimeoutError(f"imagetagger not running after {DEPLOY_TIMEOUT_S}s")
