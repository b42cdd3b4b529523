"""Overload and deadlines on the real service: a flood gets fast JSON 503s, never a hang.

The main app's limits (256 requests in flight, 30 s deadline) are too large to reach
in a test, so a second application, ``imagetagger-small`` at ``/small``, runs beside
it on the same cluster with tiny ones: 6 images in flight at the ingress, a Downloader
that takes 2 requests and queues 2, a 5 s request deadline. It is deployed the way
the session deploys the main app (``deploy_apps`` with a full Serve config), and since
``deploy_apps`` replaces every application, the config lists the main app unchanged
(Serve leaves it alone) and removes the small one at the end the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests import servers
from tests.service.helpers import IMAGE_HOST, Service, beside_the_session_app

SMALL_APP = "imagetagger-small"
SMALL_PREFIX = "/small"
MAX_IN_FLIGHT = 6
REQUEST_TIMEOUT_S = 5.0
# Above the ingress deadline, so a hung origin is cut by the request deadline.
DOWNLOAD_TIMEOUT_S = 8.0
SLOW_IMAGE_S = 1.5
FLOOD = 40
# Longest any one answer may take under the flood: the deadline plus slack, not a hang.
ANSWER_BOUND_S = 20.0
CHELSEA = Path(__file__).resolve().parents[1] / "data" / "chelsea.jpg"
TIMED_OUT = "The request took too long; retry later."
CATS = {"tabby", "tiger_cat", "Egyptian_cat"}


def small_app_config(allowed_networks: list[str]) -> dict[str, Any]:
    """``imagetagger-small``: the real builder with tiny limits, 0.15 CPU in all."""

    def deployment(name: str, **options: Any) -> dict[str, Any]:
        return {"name": name, "num_replicas": 1, "ray_actor_options": {"num_cpus": 0.05}, **options}

    return {
        "name": SMALL_APP,
        "route_prefix": SMALL_PREFIX,
        "import_path": "deployments.app:build_app",
        "args": {"model": "efficientnet_lite0"},
        "deployments": [
            deployment(
                "ImageTagger",
                # Above FLOOD: every request reaches the replica, which answers the 503.
                max_ongoing_requests=64,
                max_queued_requests=1024,  # the proxy's overflow answer is plain text
                user_config={
                    "max_in_flight": MAX_IN_FLIGHT,
                    "request_timeout_s": REQUEST_TIMEOUT_S,
                },
            ),
            # Room for 4 of the 6 admitted: the handle's backpressure answers too.
            deployment(
                "Downloader",
                max_ongoing_requests=2,
                max_queued_requests=2,
                user_config={
                    "allowed_networks": allowed_networks,
                    "timeout_s": DOWNLOAD_TIMEOUT_S,
                },
            ),
            deployment(
                "ModelDeployment",
                max_ongoing_requests=4,
                max_queued_requests=4,
                user_config={"max_batch_size": 4, "batch_wait_timeout_s": 0.01},
            ),
        ],
    }


def replica_names(app: str) -> set[str]:
    import ray

    prefix = f"SERVE_REPLICA::{app}#"
    return {
        actor["name"]
        for actor in ray.util.list_named_actors(all_namespaces=True)
        if actor["namespace"] == "serve" and actor["name"].startswith(prefix)
    }


@dataclass
class SmallApp:
    base_url: str
    images: servers.LoopbackServer
    main_replicas: set[str]
    last_hang: float = 0.0

    def predict(self, name: str, timeout: float = 60) -> requests.Response:
        url = self.images.url(f"/{name}")
        return requests.get(self.base_url + "/predictions", params={"url": url}, timeout=timeout)

    def hang_started(self) -> None:
        """The Downloader keeps a hung fetch after the ingress gives up, until its own
        ``timeout_s`` (cancellation does not reach it): note when one began."""
        self.last_hang = time.monotonic()

    def wait_downloader_free(self) -> None:
        time.sleep(max(0.0, self.last_hang + DOWNLOAD_TIMEOUT_S + 0.5 - time.monotonic()))


@pytest.fixture(scope="module")
def small_app(service: Service) -> Iterator[SmallApp]:
    chelsea = CHELSEA.read_bytes()
    routes = {
        "/chelsea.jpg": servers.respond(chelsea, "image/jpeg"),
        "/slow.jpg": servers.delayed(servers.respond(chelsea, "image/jpeg"), SLOW_IMAGE_S),
        "/hang.jpg": servers.delayed(servers.respond(chelsea, "image/jpeg"), 3600),
    }
    with servers.LoopbackServer(IMAGE_HOST, routes) as images:
        main_replicas = replica_names("imagetagger")
        app = small_app_config([f"{IMAGE_HOST}/32"])
        with beside_the_session_app(service, app) as base_url:
            yield SmallApp(base_url, images, main_replicas)


def timed(call: Callable[[], requests.Response]) -> tuple[requests.Response, float]:
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def assert_overloaded(response: requests.Response, detail: str | None = None) -> None:
    assert response.status_code == 503, response.text
    assert response.headers.get("content-type") == "application/json", (
        response.headers,
        response.text,
    )
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"type", "detail"}, body
    assert body["error"]["type"] == "Overloaded"
    assert isinstance(body["error"]["detail"], str) and body["error"]["detail"]
    assert int(response.headers["retry-after"]) >= 1, response.headers  # when to retry
    if detail is not None:
        assert body["error"]["detail"] == detail


def test_small_app_serves_beside_an_untouched_main_app(small_app: SmallApp) -> None:
    response = small_app.predict("chelsea.jpg")
    assert response.status_code == 200, response.text
    assert response.json()["predictions"][0]["label"] in CATS
    # deploy_apps got the main app's config unchanged: Serve replaced none of its
    # replicas (autoscaling may have added one; none may be missing).
    assert small_app.main_replicas <= replica_names("imagetagger")


def test_full_downloader_queue_is_a_json_503(small_app: SmallApp) -> None:
    """Exactly as many requests as the ingress admits; the Downloader holds 2 working and
    2 queued, so its handle turns the other 2 away, and they get the JSON 503 too."""
    with ThreadPoolExecutor(max_workers=MAX_IN_FLIGHT) as pool:
        responses = list(pool.map(lambda _: small_app.predict("slow.jpg"), range(MAX_IN_FLIGHT)))
    statuses = [response.status_code for response in responses]
    assert set(statuses) <= {200, 503}, statuses
    assert statuses.count(503) >= 1, statuses
    for response in responses:
        if response.status_code == 503:
            assert_overloaded(response)


def test_flood_gets_fast_json_503s_then_service_recovers(small_app: SmallApp) -> None:
    with ThreadPoolExecutor(max_workers=FLOOD) as pool:
        answers = list(
            pool.map(lambda _: timed(lambda: small_app.predict("slow.jpg")), range(FLOOD))
        )
    statuses = [response.status_code for response, _ in answers]
    assert set(statuses) <= {200, 503}, statuses
    # 6 admitted at a time, each ~1.5 s: most of the 40 are turned away, at least one served.
    assert statuses.count(503) >= FLOOD - 2 * MAX_IN_FLIGHT, statuses
    assert statuses.count(200) >= 1, statuses
    for response, _ in answers:
        if response.status_code == 503:
            assert_overloaded(response)
    slowest = max(elapsed for _, elapsed in answers)
    assert slowest < ANSWER_BOUND_S, slowest
    # Turned away means turned away now, not after waiting in a queue.
    rejected = sorted(elapsed for response, elapsed in answers if response.status_code == 503)
    assert rejected[len(rejected) // 2] < SLOW_IMAGE_S, rejected

    response = small_app.predict("chelsea.jpg")
    assert response.status_code == 200, response.text


def test_hung_origin_answers_503_at_the_request_deadline(small_app: SmallApp) -> None:
    small_app.wait_downloader_free()
    small_app.hang_started()
    response, elapsed = timed(lambda: small_app.predict("hang.jpg", timeout=30))
    assert_overloaded(response, TIMED_OUT)
    assert REQUEST_TIMEOUT_S <= elapsed < REQUEST_TIMEOUT_S + 3, elapsed


def test_hung_url_in_a_batch_fails_only_that_item(small_app: SmallApp) -> None:
    """The contract (docs/API.md): one bad URL does not fail the others, a hung one included."""
    urls = [small_app.images.url("/chelsea.jpg"), small_app.images.url("/hang.jpg")]
    small_app.wait_downloader_free()
    small_app.hang_started()
    response, elapsed = timed(
        lambda: requests.post(
            small_app.base_url + "/predictions/batch", json={"urls": urls}, timeout=30
        )
    )
    assert elapsed < REQUEST_TIMEOUT_S + 3, elapsed
    assert response.status_code == 200, response.text
    ok, hung = response.json()["results"]
    assert ok["url"] == urls[0] and ok["predictions"][0]["label"] in CATS
    assert hung == {"url": urls[1], "error": {"type": "Overloaded", "detail": TIMED_OUT}}
