"""The ingress's access layer on a bare FastAPI app: keys, rate limits, JSON answers, logs.

The app has the ingress's routes and both of its middlewares, with an ``Access`` the
test controls, so no cluster is needed. The real ingress is exercised end to end in
tests/service/test_security.py.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from fastapi import FastAPI, File, UploadFile
from fastapi.testclient import TestClient
from pydantic import ValidationError
from starlette.requests import HTTPConnection

from imagetagger.api.access import Access, AccessMiddleware, limiter_for, route_path
from imagetagger.api.auth import INVALID_KEY, MISSING_KEY, ApiKeys, hash_key
from imagetagger.api.ratelimit import RateLimiter
from imagetagger.api.request_log import RequestMiddleware
from imagetagger.api.routers.contract import guard as contract_guard
from imagetagger.settings import IngressSettings

KEY = "it-test-key-5f1c2a"
OTHER_KEY = "it-test-key-9d0e7b"
UNAUTHORIZED_MISSING = {"error": {"type": "Unauthorized", "detail": MISSING_KEY}}
UNAUTHORIZED_INVALID = {"error": {"type": "Unauthorized", "detail": INVALID_KEY}}
GUARDS = {"contract": contract_guard}
RATE_LIMITED = {"error": {"type": "RateLimited", "detail": "Too many requests; retry later."}}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make_app(access: Access) -> FastAPI:
    app = FastAPI()

    @app.get("/")
    async def info() -> dict[str, str]:
        return {"description": "open"}

    @app.get("/predictions")
    async def predict_url(url: str) -> dict[str, Any]:
        return {"url": url, "predictions": []}

    @app.post("/predictions")
    async def predict_upload(file: UploadFile = File(...)) -> dict[str, Any]:  # noqa: B008
        return {"filename": file.filename, "predictions": []}

    @app.post("/predictions/batch")
    async def predict_batch(body: dict[str, Any]) -> dict[str, Any]:
        return {"results": []}

    app.add_middleware(AccessMiddleware, access=lambda: access, guards=GUARDS)
    app.add_middleware(RequestMiddleware)
    return app


def client_for(access: Access) -> TestClient:
    return TestClient(make_app(access), raise_server_exceptions=False)


def call(client: TestClient, route: str, headers: dict[str, str] | None = None) -> Any:
    """One request to a tagging route (GET, upload or batch)."""
    if route == "get":
        return client.get("/predictions", params={"url": "http://127.0.0.2/y.jpg"}, headers=headers)
    if route == "upload":
        return client.post("/predictions", files={"file": ("a.jpg", b"xx")}, headers=headers)
    return client.post(
        "/predictions/batch", json={"urls": ["http://127.0.0.2/y.jpg"]}, headers=headers
    )


ROUTES = ("get", "upload", "batch")


@pytest.fixture
def keyed() -> TestClient:
    return client_for(Access(keys=ApiKeys([hash_key(KEY), hash_key(OTHER_KEY)])))


def test_off_by_default_every_route_is_open() -> None:
    client = client_for(Access())
    for route in ROUTES:
        assert call(client, route).status_code == 200


@pytest.mark.parametrize("route", ROUTES)
def test_missing_key_is_401(keyed: TestClient, route: str) -> None:
    response = call(keyed, route)
    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED_MISSING
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["content-type"] == "application/json"


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer not-the-key"},
        {"X-API-Key": "not-the-key"},
        {"Authorization": "Bearer"},
        {"Authorization": f"Bearer {KEY} {KEY}"},
        {"X-API-Key": f"{KEY[:-1]}"},
        {"Authorization": f"Bearer {KEY}", "X-API-Key": OTHER_KEY},
    ],
    ids=["wrong-bearer", "wrong-x-api-key", "empty-bearer", "two-tokens", "prefix", "mismatch"],
)
def test_wrong_or_malformed_key_is_401(
    keyed: TestClient, route: str, headers: dict[str, str]
) -> None:
    response = call(keyed, route, headers)
    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED_INVALID
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    "headers", [{"Authorization": f"Bearer {KEY}"}, {"X-API-Key": OTHER_KEY}], ids=["bearer", "x"]
)
def test_valid_key_in_either_header_is_served(
    keyed: TestClient, route: str, headers: dict[str, str]
) -> None:
    assert call(keyed, route, headers).status_code == 200


def test_open_routes_stay_open(keyed: TestClient) -> None:
    assert keyed.get("/").json() == {"description": "open"}
    assert keyed.get("/docs").status_code == 200
    assert keyed.get("/openapi.json").status_code == 200
    assert keyed.get("/nope").status_code == 404


def test_no_key_reaches_the_logs(keyed: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        call(keyed, "get", {"Authorization": f"Bearer {KEY}"})
        call(keyed, "upload", {"X-API-Key": OTHER_KEY})
        call(keyed, "batch", {"X-API-Key": "wrong-key-3c4d"})
    lines = [record.getMessage() for record in caplog.records]
    assert any("route=/predictions/batch status=401" in line for line in lines), lines
    assert any("route=/predictions status=200" in line for line in lines), lines
    for secret in (KEY, OTHER_KEY, "wrong-key-3c4d", hash_key(KEY)):
        assert all(secret not in line for line in lines)


def test_a_refused_upload_is_answered_before_its_body_is_read() -> None:
    access = Access(keys=ApiKeys([hash_key(KEY)]))
    reached: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append("app")

    async def receive() -> dict[str, Any]:
        reached.append("receive")
        return {"type": "http.request", "body": b"x" * 1000, "more_body": False}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/predictions",
        "root_path": "",
        "headers": [(b"content-type", b"multipart/form-data; boundary=x")],
        "client": ("127.0.0.9", 5000),
    }
    asyncio.run(AccessMiddleware(app, lambda: access, GUARDS)(scope, receive, send))
    assert reached == []
    assert sent[0]["status"] == 401
    assert scope["route"].path == "/predictions"  # for the request log and metrics


def test_rate_limit_per_client_address_then_recovery() -> None:
    clock = Clock()
    access = Access(limiter=RateLimiter(1.0, 2, clock=clock))
    first = client_for(access)
    second = TestClient(make_app(access), client=("127.0.0.8", 4000))
    assert [call(first, "get").status_code for _ in range(2)] == [200, 200]
    refused = call(first, "batch")
    assert refused.status_code == 429
    assert refused.json() == RATE_LIMITED
    assert refused.headers["retry-after"] == "1"
    assert call(second, "upload").status_code == 200  # another address, its own bucket
    assert first.get("/").status_code == 200  # only the tagging routes are limited
    clock.now += 1.0
    assert call(first, "get").status_code == 200


def test_with_keys_the_client_is_the_key() -> None:
    clock = Clock()
    access = Access(keys=ApiKeys([hash_key(KEY), hash_key(OTHER_KEY)]))
    access.limiter = RateLimiter(0.5, 1, clock=clock)
    client = client_for(access)  # one address, two keys
    assert call(client, "get", {"X-API-Key": KEY}).status_code == 200
    refused = call(client, "get", {"Authorization": f"Bearer {KEY}"})
    assert refused.status_code == 429 and refused.headers["retry-after"] == "2"
    assert call(client, "get", {"X-API-Key": OTHER_KEY}).status_code == 200
    assert call(client, "get").status_code == 401  # a 401 is not rate limited: no key, no bucket


def test_check_uses_the_address_when_keys_are_off() -> None:
    access = Access(limiter=RateLimiter(1.0, 1, clock=Clock()))
    scope = {"type": "http", "headers": [(b"x-api-key", b"ignored")], "client": ("127.0.0.5", 1)}
    access.check(contract_guard, HTTPConnection(scope))
    assert len(access.limiter) == 1


@pytest.mark.parametrize(
    ("path", "root_path", "expected"),
    [
        ("/predictions", "", "/predictions"),
        ("/secure/predictions", "/secure", "/predictions"),
        ("/secure/predictions/batch", "/secure/", "/predictions/batch"),
        ("/predictions", "/secure", "/predictions"),  # a path already without the prefix
        ("/secure", "/secure", "/"),
        ("/secured/predictions", "/secure", "/secured/predictions"),
    ],
)
def test_route_path_strips_the_route_prefix(path: str, root_path: str, expected: str) -> None:
    assert route_path({"path": path, "root_path": root_path}) == expected


def test_reconfigure_keeps_the_buckets_unless_the_limit_changes() -> None:
    off = IngressSettings()
    assert (off.rate_limit_per_s, off.rate_limit_burst) == (0.0, 20)
    assert limiter_for(off, None) is None
    on = IngressSettings(rate_limit_per_s=2, rate_limit_burst=5)
    limiter = limiter_for(on, None)
    assert limiter is not None and (limiter.rate_per_s, limiter.burst) == (2.0, 5)
    same = IngressSettings(rate_limit_per_s=2, rate_limit_burst=5, max_in_flight=3)
    assert limiter_for(same, limiter) is limiter
    assert limiter_for(IngressSettings(rate_limit_per_s=3, rate_limit_burst=5), limiter) not in (
        None,
        limiter,
    )
    assert limiter_for(off, limiter) is None


@pytest.mark.parametrize("bad", [{"rate_limit_per_s": -1}, {"rate_limit_burst": 0}])
def test_rate_limit_settings_are_validated(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        IngressSettings(**bad)
