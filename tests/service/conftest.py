"""One local Ray cluster and one deployed imagetagger per test session.

The application is deployed from the real ``serve_config.yaml`` the way ``serve run``
deploys it (same schema, same builder, same per-deployment options), with two test
changes: HTTP on a free loopback port, and ``allowed_networks`` opened for the image
server on 127.0.0.2 (127.0.0.1 stays forbidden, for the SSRF tests). What the tests
share besides these fixtures is in :mod:`tests.service.helpers`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest

from imagetagger.serving.serving_env import isolated_serve_env, serving_environment
from tests import servers
from tests.service.helpers import (
    IMAGE_HOST,
    Service,
    photo_routes,
    test_serve_config,
    wait_until_running,
)

# The serving environment (HAProxy ingress, throughput mode) that `make run` and the
# container give Serve, set before anything imports Ray: Ray reads it at import and in
# the processes ``ray.init`` starts. HAProxy's files and stats port are private to this
# session, so another Serve instance on the machine does not collide with it.
os.environ.update(serving_environment(os.environ))  # what the caller exported wins, as in serve
os.environ.update(isolated_serve_env(tempfile.mkdtemp(prefix="haproxy-")))


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[str]:
    """A local 2-CPU cluster in the product's serving mode; yields its metrics URL."""
    import ray
    from ray import serve

    metrics_port = servers.unused_port("127.0.0.1")
    ray.init(
        address="local",  # a new private instance, never a cluster `ray start` left running
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
def service(session_service: Service) -> Service:
    """The deployed app; a test module may override this (e.g. to add runtimes)."""
    return session_service


@pytest.fixture(scope="session")
def session_service(ray_cluster: str, image_server: servers.LoopbackServer) -> Service:
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
