"""The ingress's outer middleware on a bare Starlette app: no cluster needed."""

from __future__ import annotations

import logging

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from imagetagger.api.request_log import RequestMiddleware, _url_host


def _ok(request):
    return PlainTextResponse("fine", status_code=201)


def _bug(request):
    raise RuntimeError("secret internals")


@pytest.fixture
def client() -> TestClient:
    app = Starlette(routes=[Route("/ok", _ok), Route("/bug", _bug)])
    app.add_middleware(RequestMiddleware)
    return TestClient(app, raise_server_exceptions=False)


def test_a_bug_is_a_json_500_without_internals(client: TestClient, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="ray.serve"):
        response = client.get("/bug")
    assert response.status_code == 500
    assert response.json() == {"error": {"type": "InternalError", "detail": "Internal error."}}
    assert "secret" not in response.text
    assert any("secret internals" in (r.exc_text or "") for r in caplog.records)


def test_one_log_line_per_request(client: TestClient, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="ray.serve"):
        client.get(
            "/ok?url=https://user:pw@img.example.org/a.jpg?token=s3",
            headers={"x-request-id": "r-1"},
        )
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("request_id=")]
    assert lines == [lines[0]]  # exactly one
    assert lines[0].startswith("request_id=r-1 method=GET route=/ok status=201 duration_ms=")
    assert lines[0].endswith("url_host=img.example.org")
    assert "token" not in lines[0] and "pw" not in lines[0]


def test_url_host_of_odd_queries() -> None:
    assert _url_host(b"") == "-"
    assert _url_host(b"url=http://[::1") == "-"
    assert _url_host(b"top=3&url=http%3A%2F%2F127.0.0.2%3A80%2Fx") == "127.0.0.2"
