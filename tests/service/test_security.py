"""API keys, rate limits and per-host fetch caps on the real service.

Keys are read from the ingress replica's environment, so they need an application of
their own: ``imagetagger-secure`` at ``/secure`` runs beside the main app with
``IMAGETAGGER_API_KEY_HASHES`` in its ``runtime_env`` (hashes only; the keys exist only
in this file), a rate limit of 1 request/s with a burst of 40 per key, and a
Downloader capped at 2 connections per host. Each test uses its own key, so each has
its own bucket. Per-address limits (keys off) are shown on the main app, whose ingress
``user_config`` gets a limit for this module only: a ``user_config`` change is applied
live by ``reconfigure``, nothing restarts, and the module puts it back at the end.
Clients with different addresses are made by binding the client socket to other
loopback addresses (127.0.0.5, 127.0.0.6).
"""

from __future__ import annotations

import base64
import copy
import http.client
import json
import os
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
import requests

from imagetagger.api.auth import INVALID_KEY, MISSING_KEY, hash_key
from tests import servers
from tests.service.helpers import IMAGE_HOST, Service, deploy, test_serve_config, wait_for

SECURE_APP = "imagetagger-secure"
SECURE_PREFIX = "/secure"
# One key per test, so every test starts with a full bucket of its own.
KEYS = {
    name: f"it-e2e-{name}-{uuid.uuid4().hex}"
    for name in ("auth", "limited", "other", "fetch", "labels")
}
RATE_PER_S = 1.0
BURST = 40
MAX_PER_HOST = 2
CONCURRENT = 32
SLOW_IMAGE_S = 0.25
# The main app's per-address limit while this module runs.
MAIN_BURST = 3
CHELSEA = Path(__file__).resolve().parents[1] / "data" / "chelsea.jpg"
CATS = {"tabby", "tiger_cat", "Egyptian_cat"}
MISSING = {"error": {"type": "Unauthorized", "detail": MISSING_KEY}}
INVALID = {"error": {"type": "Unauthorized", "detail": INVALID_KEY}}
RATE_LIMITED = {"error": {"type": "RateLimited", "detail": "Too many requests; retry later."}}
LOG_WAIT_S = 60


def secure_app_config(main_app: dict[str, Any], allowed_networks: list[str]) -> dict[str, Any]:
    """The real builder with keys, a rate limit and a per-host cap; 0.15 CPU in all."""

    def deployment(name: str, **options: Any) -> dict[str, Any]:
        return {"name": name, "num_replicas": 1, "ray_actor_options": {"num_cpus": 0.05}, **options}

    env = dict(main_app.get("runtime_env", {}).get("env_vars", {}))
    env["IMAGETAGGER_API_KEY_HASHES"] = ",".join(hash_key(key) for key in KEYS.values())
    # Throughput mode buffers 1000 replica log records before writing any; the log test
    # must read what was logged, so this app writes each record at once.
    env["RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE"] = "1"
    return {
        "name": SECURE_APP,
        "route_prefix": SECURE_PREFIX,
        "import_path": "deployments.app:build_app",
        "runtime_env": {"env_vars": env},
        "args": {"model": "efficientnet_lite0"},
        "deployments": [
            deployment(
                "ImageTagger",
                user_config={"rate_limit_per_s": RATE_PER_S, "rate_limit_burst": BURST},
            ),
            deployment(
                "Downloader",
                max_ongoing_requests=64,  # all 32 inside the one replica, queued at its cap
                user_config={
                    "allowed_networks": allowed_networks,
                    "max_connections_per_host": MAX_PER_HOST,
                },
            ),
            deployment(
                "ModelDeployment",
                max_ongoing_requests=16,
                user_config={"max_batch_size": 8, "batch_wait_timeout_s": 0.01},
            ),
        ],
    }


def with_main_rate_limit(config: dict[str, Any]) -> dict[str, Any]:
    limited = copy.deepcopy(config)
    (main,) = (app for app in limited["applications"] if app["name"] == "imagetagger")
    (ingress,) = (d for d in main["deployments"] if d["name"] == "ImageTagger")
    ingress["user_config"].update(rate_limit_per_s=RATE_PER_S, rate_limit_burst=MAIN_BURST)
    return limited


@dataclass
class Secure:
    main_url: str
    base_url: str
    images: servers.LoopbackServer
    deployed: dict[str, Any]

    def image_url(self, name: str) -> str:
        return self.images.url(f"/{name}")


@pytest.fixture(scope="module")
def secure(service: Service) -> Iterator[Secure]:
    port = urlsplit(service.base_url).port
    assert port is not None
    allowed = [f"{IMAGE_HOST}/32"]
    main = test_serve_config(port, allowed)  # the session's config, put back at the end
    config = with_main_rate_limit(main)
    config["applications"].append(secure_app_config(main["applications"][0], allowed))
    chelsea = CHELSEA.read_bytes()
    routes = {
        "/chelsea.jpg": servers.respond(chelsea, "image/jpeg"),
        "/slow.jpg": servers.delayed(servers.respond(chelsea, "image/jpeg"), SLOW_IMAGE_S),
    }
    with servers.LoopbackServer(IMAGE_HOST, routes) as images:
        deploy(config)
        secure = Secure(service.base_url, service.base_url + SECURE_PREFIX, images, config)
        try:
            wait_for(SECURE_APP, secure.base_url)
            wait_for("imagetagger", service.base_url)
            yield secure
        finally:
            deploy(main)
            wait_for(SECURE_APP, secure.base_url, present=False)
            wait_for("imagetagger", service.base_url)


def tag(secure: Secure, route: str, headers: dict[str, str] | None = None) -> requests.Response:
    """One request to a tagging route of the secure app: GET, upload or batch."""
    url = secure.base_url + "/predictions"
    if route == "get":
        params = {"url": secure.image_url("chelsea.jpg")}
        return requests.get(url, params=params, headers=headers, timeout=60)
    if route == "upload":
        files = {"file": ("chelsea.jpg", CHELSEA.read_bytes(), "image/jpeg")}
        return requests.post(url, files=files, headers=headers, timeout=60)
    body = {"urls": [secure.image_url("chelsea.jpg")]}
    return requests.post(url + "/batch", json=body, headers=headers, timeout=60)


def assert_cat(response: requests.Response, route: str) -> None:
    assert response.status_code == 200, response.text
    body = response.json()
    predictions = body["results"][0]["predictions"] if route == "batch" else body["predictions"]
    assert predictions[0]["label"] in CATS


ROUTES = ("get", "upload", "batch")


# --- API keys ---------------------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES)
def test_missing_wrong_and_malformed_keys_are_401(secure: Secure, route: str) -> None:
    refused = {
        "missing": ({}, MISSING),
        "other scheme": ({"Authorization": "Basic aXQ6a2V5"}, MISSING),
        "wrong bearer": ({"Authorization": "Bearer it-e2e-wrong-key-0001"}, INVALID),
        "wrong x-api-key": ({"X-API-Key": "it-e2e-wrong-key-0002"}, INVALID),
        "empty bearer": ({"Authorization": "Bearer"}, INVALID),
        "two tokens": ({"Authorization": f"Bearer {KEYS['auth']} x"}, INVALID),
        "two keys": (
            {"Authorization": f"Bearer {KEYS['auth']}", "X-API-Key": KEYS["other"]},
            INVALID,
        ),
    }
    for case, (headers, expected) in refused.items():
        response = tag(secure, route, headers)
        assert response.status_code == 401, (case, response.text)
        assert response.json() == expected, case
        assert response.headers["www-authenticate"] == "Bearer", case
        assert response.headers["content-type"] == "application/json", case


@pytest.mark.parametrize("route", ROUTES)
def test_each_header_form_of_a_valid_key_is_served(secure: Secure, route: str) -> None:
    assert_cat(tag(secure, route, {"Authorization": f"Bearer {KEYS['auth']}"}), route)
    assert_cat(tag(secure, route, {"X-API-Key": KEYS["auth"]}), route)


def test_open_routes_need_no_key(secure: Secure) -> None:
    info = requests.get(secure.base_url + "/", timeout=30)
    assert info.status_code == 200 and info.json()["model"] == "efficientnet_lite0"
    assert requests.get(secure.base_url + "/docs", timeout=30).status_code == 200
    proxy = secure.main_url
    assert requests.get(proxy + "/-/healthz", timeout=30).text == "success"
    assert requests.get(proxy + "/-/routes", timeout=30).json()[SECURE_PREFIX] == SECURE_APP


def test_openapi_shows_the_security_schemes(secure: Secure) -> None:
    spec = requests.get(secure.base_url + "/openapi.json", timeout=30).json()
    assert spec["components"]["securitySchemes"] == {
        "BearerKey": {
            "type": "http",
            "scheme": "bearer",
            "description": "`Authorization: Bearer KEY`. Required only when the operator "
            "configured API keys (off by default).",
        },
        "ApiKeyHeader": {
            "type": "apiKey",
            "in": "header",
            "name": "X-API-Key",
            "description": "`X-API-Key: KEY`. Required only when the operator configured "
            "API keys (off by default).",
        },
    }
    for path, method in (
        ("/predictions", "get"),
        ("/predictions", "post"),
        ("/predictions/batch", "post"),
    ):
        operation = spec["paths"][path][method]
        assert operation["security"] == [{"BearerKey": []}, {"ApiKeyHeader": []}]
        assert {"401", "429"} <= set(operation["responses"])
    assert "security" not in spec["paths"]["/"]["get"]


def test_only_hashes_are_configured_and_no_key_reaches_the_logs(secure: Secure) -> None:
    import ray

    deployed = json.dumps(secure.deployed)
    for key in KEYS.values():
        assert key not in deployed and hash_key(key) in deployed

    marker = f"it-e2e-log-{uuid.uuid4().hex}"
    wrong = f"it-e2e-wrong-{uuid.uuid4().hex}"
    for headers in (
        {"Authorization": f"Bearer {KEYS['auth']}"},
        {"X-API-Key": KEYS["auth"]},
        {"Authorization": f"Bearer {wrong}"},
        {"X-API-Key": wrong},
    ):
        tag(secure, "get", {**headers, "X-Request-ID": marker})

    logs = Path(ray._private.worker._global_node.get_logs_dir_path())
    deadline = time.monotonic() + LOG_WAIT_S
    while True:  # the request lines prove the logs were written before they are searched
        text = read_logs(logs)
        if text.count(f"request_id={marker}") >= 4 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert text.count(f"request_id={marker}") >= 4, "the ingress's request lines never appeared"
    assert f"request_id={marker} method=GET route=/predictions status=401" in text
    for secret in (*KEYS.values(), wrong):
        assert secret not in text


def read_logs(directory: Path) -> str:
    """Every log file of the session, as text (files may rotate away while read)."""
    texts = []
    for path in directory.rglob("*"):
        try:
            texts.append(path.read_text(errors="replace"))
        except (IsADirectoryError, FileNotFoundError, PermissionError):
            continue
    return "\n".join(texts)


# --- rate limits -------------------------------------------------------------------------


def test_a_key_past_its_burst_gets_429_while_another_is_served(secure: Secure) -> None:
    limited = {"X-API-Key": KEYS["limited"]}
    cheap = secure.base_url + "/predictions"  # no url: a 422 that costs no download
    statuses = []
    for _ in range(BURST + 10):
        response = requests.get(cheap, headers=limited, timeout=30)
        statuses.append(response.status_code)
        if response.status_code == 429:
            break
    assert set(statuses[:-1]) == {422} and statuses[-1] == 429, statuses
    assert BURST <= len(statuses) - 1 <= BURST + 3, statuses  # + what refilled meanwhile
    assert response.json() == RATE_LIMITED
    assert response.headers["retry-after"] == "1"
    assert response.headers["content-type"] == "application/json"
    assert (
        requests.get(
            cheap, headers={"Authorization": f"Bearer {KEYS['limited']}"}, timeout=30
        ).status_code
        == 429
    )

    assert_cat(tag(secure, "get", {"X-API-Key": KEYS["other"]}), "get")  # its own bucket

    time.sleep(int(response.headers["retry-after"]) + 0.1)
    assert requests.get(cheap, headers=limited, timeout=30).status_code == 422


def request_from(source: str, base_url: str, path: str, **params: str) -> tuple[int, dict, Any]:
    """GET from the client address ``source`` (a loopback address the socket binds)."""
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(
        parts.hostname, parts.port, timeout=60, source_address=(source, 0)
    )
    try:
        connection.request("GET", path + ("?" + urlencode(params) if params else ""))
        response = connection.getresponse()
        body = json.loads(response.read())
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        connection.close()


def test_without_keys_the_limit_follows_the_address_the_ingress_sees(secure: Secure) -> None:
    """Behind Serve's Python proxy each client address has its own bucket. In the serving
    mode HAProxy connects to the ingress itself and adds no X-Forwarded-For, so every
    client shares the bucket of HAProxy's address (README: use API keys to tell clients
    apart there)."""
    behind_haproxy = os.environ.get("RAY_SERVE_ENABLE_HA_PROXY") == "1"
    first, second = "127.0.0.5", "127.0.0.6"
    statuses = []
    for _ in range(MAIN_BURST + 5):
        status, headers, body = request_from(first, secure.main_url, "/predictions")
        statuses.append(status)
        if status == 429:
            break
    assert statuses == [422] * MAIN_BURST + [429], statuses
    assert body == RATE_LIMITED and headers["retry-after"] == "1"

    status, _, body = request_from(
        second, secure.main_url, "/predictions", url=secure.image_url("chelsea.jpg")
    )
    if behind_haproxy:
        assert status == 429 and body == RATE_LIMITED
    else:
        assert status == 200 and body["predictions"][0]["label"] in CATS

    time.sleep(1.1)
    assert request_from(first, secure.main_url, "/predictions")[0] == 422


# --- per-host fetch cap ------------------------------------------------------------------


def test_downloader_opens_at_most_max_connections_per_host(secure: Secure) -> None:
    headers = {"X-API-Key": KEYS["fetch"]}
    url = secure.base_url + "/predictions"
    params = {"url": secure.image_url("slow.jpg")}
    before = secure.images.connections
    with ThreadPoolExecutor(max_workers=CONCURRENT) as pool:
        responses = list(
            pool.map(
                lambda _: requests.get(url, params=params, headers=headers, timeout=60),
                range(CONCURRENT),
            )
        )
    assert [r.status_code for r in responses] == [200] * CONCURRENT, [r.text for r in responses]
    assert all(r.json()["predictions"][0]["label"] in CATS for r in responses)
    assert secure.images.connections - before == CONCURRENT
    # One Downloader replica: the cap was reached under the load and never passed.
    assert secure.images.peak_connections == MAX_PER_HOST


def test_the_label_apis_check_keys_in_their_own_wire_format(secure: Secure) -> None:
    from google.api_core import exceptions as google_errors
    from google.cloud import vision

    from tests.service.test_label_apis import rekognition_client, vision_client

    key = KEYS["labels"]
    image = vision.Image(content=CHELSEA.read_bytes())
    with pytest.raises(google_errors.Forbidden, match="missing a valid API key"):
        vision_client(secure.base_url).label_detection(image=image)
    with pytest.raises(google_errors.Forbidden, match="not valid"):
        vision_client(secure.base_url, api_key="it-e2e-wrong-key-0003").label_detection(image=image)
    answer = vision_client(secure.base_url, api_key=key).label_detection(image=image)
    assert "Cat" in [a.description for a in answer.label_annotations]
    body = {
        "requests": [
            {
                "image": {"content": base64.b64encode(CHELSEA.read_bytes()).decode()},
                "features": [{"type": "LABEL_DETECTION"}],
            }
        ]
    }
    by_query = requests.post(
        secure.base_url + "/v1/images:annotate", params={"key": key}, json=body, timeout=60
    )
    assert by_query.status_code == 200 and by_query.json()["responses"][0]["labelAnnotations"]

    # Under a route prefix the endpoint ends with "/": POST /secure would be redirected.
    wrong = rekognition_client(secure.base_url + "/", key="it-e2e-wrong-key-0004")
    with pytest.raises(wrong.exceptions.ClientError, match="UnrecognizedClientException"):
        wrong.detect_labels(Image={"Bytes": CHELSEA.read_bytes()})
    labels = rekognition_client(secure.base_url + "/", key=key).detect_labels(
        Image={"Bytes": CHELSEA.read_bytes()}, MaxLabels=3
    )["Labels"]
    assert "Cat" in [label["Name"] for label in labels]
