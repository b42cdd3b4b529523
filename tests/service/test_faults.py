"""Replica faults under load: a replica killed mid-request costs answers, never hangs.

A replica of the main app is killed (``ray.kill``, as an OOM kill or a lost node
would) while 16 clients keep requests in flight through it. Every request must still
get an answer in bounded time: 200, or the contract's JSON error (Serve/Ray errors
about dead replicas are mapped to 503 Overloaded by ``deployments.errors``).
A killed Downloader fails some in-flight request with that 503; a killed
ModelDeployment a 503 or none (the ingress's grouped call may go to the replacement).
A killed ImageTagger (the ingress) fails none that HAProxy can replay
(``RAY_SERVE_HAPROXY_RETRY_ON`` in the serving environment): they are answered once
the new replica is up; one caught by the kill may see its connection closed. The kill
lasts from ``ray.kill`` until the replica is gone (its name dropped and its process
exited), which takes a few milliseconds.
Serve's controller notices the dead replica and starts a new one; the test waits
until the app is fully RUNNING again and serving, and requests sent after that must
all succeed, so the tests after it see the service as the session deployed it.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests import servers
from tests.service.helpers import IMAGE_HOST, Service

APP = "imagetagger"
IN_FLIGHT = 16
SLOW_IMAGE_S = 2.0
LOAD_BEFORE_KILL_S = 3.0  # past the first answers: the load is steady when the kill comes
LOAD_AFTER_RECOVERY_S = 3.0
# Ingress deadline (30 s in serve_config.yaml) plus slack: later than this is a hang.
ANSWER_BOUND_S = 45.0
RECOVERY_TIMEOUT_S = 120.0
CHELSEA = Path(__file__).resolve().parents[1] / "data" / "chelsea.jpg"
CATS = {"tabby", "tiger_cat", "Egyptian_cat"}


@pytest.fixture(scope="module")
def slow_images() -> Iterator[servers.LoopbackServer]:
    chelsea = CHELSEA.read_bytes()
    routes = {
        "/chelsea.jpg": servers.respond(chelsea, "image/jpeg"),
        "/slow.jpg": servers.delayed(servers.respond(chelsea, "image/jpeg"), SLOW_IMAGE_S),
    }
    with servers.LoopbackServer(IMAGE_HOST, routes) as images:
        yield images


def replica_actor_names(deployment: str) -> list[str]:
    """Names of the live replica actors of ``deployment`` in the main app."""
    import ray

    prefix = f"SERVE_REPLICA::{APP}#{deployment}#"
    return sorted(
        actor["name"]
        for actor in ray.util.list_named_actors(all_namespaces=True)
        if actor["namespace"] == "serve" and actor["name"].startswith(prefix)
    )


@dataclass(frozen=True)
class Kill:
    """One replica killed: from the kill's start until it was seen dead."""

    name: str
    started: float
    dead: float

    def caught(self, sent: float, done: float) -> bool:
        """Was a request sent at ``sent`` and ended at ``done`` in flight during the kill?"""
        return sent < self.dead and done > self.started


def kill_one_replica(deployment: str) -> Kill:
    import ray

    names = replica_actor_names(deployment)
    assert names, f"no {deployment} replica to kill"
    actor = ray.get_actor(names[0], namespace="serve")
    pid = ray.get(actor.__ray_call__.remote(lambda _replica: os.getpid()), timeout=30)
    started = time.monotonic()
    ray.kill(actor, no_restart=True)  # asynchronous: the process dies a little later
    deadline = started + 30
    # Dead when Ray has dropped its name and its process has exited: the GCS forgets the
    # name first, and until the process is gone it may still take a connection (a
    # clean-clone run saw one closed 18 ms after the name went).
    while (
        names[0] in replica_actor_names(deployment) or Path(f"/proc/{pid}").exists()
    ) and time.monotonic() < deadline:
        time.sleep(0.01)
    return Kill(names[0], started, time.monotonic())


def fully_running() -> bool:
    """The app RUNNING, each deployment HEALTHY with only RUNNING replicas."""
    from ray import serve

    status = serve.status().applications.get(APP)
    if status is None or status.status != "RUNNING":
        return False
    return all(
        deployment.status == "HEALTHY" and set(deployment.replica_states) == {"RUNNING"}
        for deployment in status.deployments.values()
    )


def wait_until_recovered(service: Service, images: servers.LoopbackServer) -> float:
    """Seconds until the app is fully running again and tags a photo; fails past the bound."""
    started = time.monotonic()
    last = "nothing yet"
    while time.monotonic() - started < RECOVERY_TIMEOUT_S:
        if fully_running():
            try:
                response = service.predict(images.url("/chelsea.jpg"))
            except requests.RequestException as exc:
                last = repr(exc)
            else:
                if response.status_code == 200:
                    return time.monotonic() - started
                last = f"{response.status_code} {response.text}"
        time.sleep(1)
    raise AssertionError(f"{APP} did not recover in {RECOVERY_TIMEOUT_S}s; last answer: {last}")


def assert_answer_or_json_503(response: requests.Response) -> None:
    """200 with a cat, or the contract's JSON 503: nothing else, never plain text."""
    if response.status_code == 200:
        assert response.json()["predictions"][0]["label"] in CATS, response.text
        return
    assert response.status_code == 503, (response.status_code, response.text)
    assert response.headers.get("content-type") == "application/json", (
        response.headers,
        response.text,
    )
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"type", "detail"}, body
    assert body["error"]["type"] == "Overloaded", body


@dataclass(frozen=True)
class Answer:
    response: requests.Response | None  # None: the connection closed before a whole answer
    sent: float
    done: float

    @property
    def outcome(self) -> int | str:
        return "closed" if self.response is None else self.response.status_code


def keep_requesting(service: Service, url: str, stop: threading.Event) -> list[Answer]:
    """One client: request after request until ``stop``, each bounded by a timeout."""
    answers = []
    while not stop.is_set():
        sent = time.monotonic()
        try:
            response: requests.Response | None = requests.get(
                service.base_url + "/predictions", params={"url": url}, timeout=ANSWER_BOUND_S + 15
            )
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):
            # The connection closed before the answer, or in the middle of it (the replica
            # died between headers and body). A timeout is not caught: it fails the test.
            response = None
        answers.append(Answer(response, sent, time.monotonic()))
    return answers


@pytest.mark.parametrize(
    ("deployment", "image", "in_flight_outcomes"),
    [
        # A slow origin keeps every request inside the Downloader when it dies: some of
        # them must pay for it with the contract's 503.
        ("Downloader", "/slow.jpg", {200, 503}),
        # A fast one keeps the model busy. Its images reach it in grouped calls, which
        # Serve may replay on the replacement replica: a 503 or, as measured, all 200.
        ("ModelDeployment", "/chelsea.jpg", {200, 503}),
        # The ingress: HAProxy replays what the dead replica never answered; a request
        # it cannot replay sees its connection closed (never a plain-text answer).
        ("ImageTagger", "/chelsea.jpg", {200, "closed"}),
    ],
)
def test_replica_killed_under_load(
    service: Service,
    slow_images: servers.LoopbackServer,
    deployment: str,
    image: str,
    in_flight_outcomes: set[int | str],
) -> None:
    wait_until_recovered(service, slow_images)  # start from a fully running app
    stop = threading.Event()
    with ThreadPoolExecutor(max_workers=IN_FLIGHT) as pool:
        clients = [
            pool.submit(keep_requesting, service, slow_images.url(image), stop)
            for _ in range(IN_FLIGHT)
        ]
        try:
            time.sleep(LOAD_BEFORE_KILL_S)
            kill = kill_one_replica(deployment)
            killed, killed_at = kill.name, kill.started
            wait_until_recovered(service, slow_images)
            recovered_at = time.monotonic()
            time.sleep(LOAD_AFTER_RECOVERY_S)
        finally:
            stop.set()
        answers = [answer for client in clients for answer in client.result()]

    in_flight = [a.outcome for a in answers if a.sent < killed_at < a.done]
    assert in_flight, f"no request was in flight when {killed} was killed"
    assert set(in_flight) <= in_flight_outcomes, in_flight
    if deployment == "Downloader":
        assert set(in_flight) != {200}, f"killing {killed} cost no in-flight request"
    for answer in answers:
        assert answer.done - answer.sent < ANSWER_BOUND_S, f"{answer.done - answer.sent:.1f}s"
        if answer.response is not None:
            assert_answer_or_json_503(answer.response)
        else:  # only a request caught by the kill may lose its connection
            assert kill.caught(answer.sent, answer.done), (answer, kill)
    outcomes = Counter(a.outcome for a in answers)
    print(f"killed {deployment}: in flight {Counter(in_flight)}, all {outcomes}")
    after = [a.outcome for a in answers if a.sent > recovered_at]
    assert after and set(after) == {200}, after
    assert killed not in replica_actor_names(deployment)
