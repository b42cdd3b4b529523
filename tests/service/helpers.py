"""What the Serve tests share: the deployed service's client, the session's config, and
deploying beside it. The fixtures that start the cluster are in ``conftest.py``.

Nothing here imports Ray at module level: ``conftest.py`` sets the serving environment
before Ray is first imported.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from imagetagger.serving.serve_config import apply_allowed_networks, apply_http, load_serve_config
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
    """serve_config.yaml with the test's port and allowed networks (as `imagetagger
    serve --port ... --allow-network ...` changes it)."""
    config = apply_http(load_serve_config(ROOT / "serve_config.yaml"), host="127.0.0.1", port=port)
    return apply_allowed_networks(config, allowed_networks)


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


def deploy(config: dict[str, Any]) -> None:
    """What ``serve deploy`` does: make the cluster's applications exactly ``config``'s."""
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeDeploySchema

    _get_global_client().deploy_apps(ServeDeploySchema.model_validate(config), _blocking=False)


def wait_for(app: str, base_url: str, *, present: bool = True) -> None:
    """Until ``app`` is RUNNING and answers ``GET base_url/`` (or is gone)."""
    from ray import serve

    deadline = time.monotonic() + DEPLOY_TIMEOUT_S
    while time.monotonic() < deadline:
        status = serve.status().applications.get(app)
        if not present and status is None:
            return
        if present and status is not None:
            if status.status == "DEPLOY_FAILED":
                raise RuntimeError(f"{app} failed to deploy: {status.message}")
            if status.status == "RUNNING" and _answers(base_url + "/"):
                return
        time.sleep(0.5)
    raise TimeoutError(f"{app} not {'running' if present else 'removed'} in {DEPLOY_TIMEOUT_S}s")


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.RequestException:
        return False


TF_APP = "imagetagger-tf"
TF_PREFIX = "/tf"


def tensorflow_app_config(allowed_networks: list[str]) -> dict[str, Any]:
    """The session's app on the ``tensorflow`` runtime, at ``/tf``, in little CPU.

    The same builder and user_config as serve_config.yaml; the model batches (4), as it
    does on GPUs, so ``@serve.batch`` is exercised too.
    """
    (app,) = test_serve_config(0, allowed_networks)["applications"]
    app = {**app, "name": TF_APP, "route_prefix": TF_PREFIX}
    app["args"] = {"model": app["args"]["model"], "runtime": "tensorflow", "intra_op_threads": 1}
    deployments = []
    for deployment in app["deployments"]:
        deployment = {**deployment, "ray_actor_options": {"num_cpus": 0.01}}
        deployment.pop("autoscaling_config", None)
        deployment["num_replicas"] = 1
        if deployment["name"] == "ModelDeployment":
            deployment["user_config"] = {"max_batch_size": 4, "batch_wait_timeout_s": 0.002}
        deployments.append(deployment)
    app["deployments"] = deployments
    return app


@contextmanager
def beside_the_session_app(service: Service, app: dict[str, Any]) -> Iterator[str]:
    """Deploy ``app`` next to the session's app (left running as is); remove it after.

    Yields the new app's base URL (the session's HTTP port plus its route prefix).
    """
    port = urlsplit(service.base_url).port
    assert port is not None
    main = test_serve_config(port, [f"{IMAGE_HOST}/32"])  # identical to the session's
    deploy({**main, "applications": [*main["applications"], app]})
    base_url = service.base_url + app["route_prefix"]
    try:
        wait_for(app["name"], base_url)
        yield base_url
    finally:
        deploy(main)
        wait_for(app["name"], base_url, present=False)
        wait_for("imagetagger", service.base_url)


@contextmanager
def tensorflow_service(service: Service) -> Iterator[Service]:
    """The ``tensorflow`` twin beside the session's app, for as long as it is needed."""
    with beside_the_session_app(service, tensorflow_app_config([f"{IMAGE_HOST}/32"])) as url:
        yield Service(url, service.images, service.metrics_url)
