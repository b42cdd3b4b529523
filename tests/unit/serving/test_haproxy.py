"""imagetagger.serving.haproxy: Ray's HAProxy config amended, checked on the real HAProxy binary.

The config is one Ray Serve 2.60 wrote for ``imagetagger serve`` (tests/data/haproxy/,
paths and ports made placeholders). The amended config is run by Ray's own HAProxy
build on loopback in front of a stand-in replica that answers in plain text as Serve's
Python proxy does: every error answer must come out as the contract's JSON. No Ray
cluster starts here; the listening-socket service test checks the real service.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from imagetagger.serving import haproxy
from imagetagger.serving.serving_env import real_haproxy_binary
from tests import servers
from tests.paths import TEST_DATA

SAMPLE = TEST_DATA / "haproxy" / "ray-2.60.cfg"
JSON_TYPES = {"Overloaded", "RequestTimeout"}


def sample(directory: Path, ports: dict[str, int], *, with_app: bool = True) -> str:
    text = SAMPLE.read_text().replace("@DIR@", str(directory))
    for name, port in ports.items():
        text = text.replace(f"@{name}@", str(port))
    if not with_app:  # what Ray writes before the application has routes
        text = "\n".join(line for line in text.splitlines() if "use_backend http-" not in line)
    # The server-state file does not exist outside a running Serve.
    return text.replace("    load-server-state-from-file global\n", "")


def test_amend_moves_stats_and_exporter_to_loopback_and_opens_only_the_service(
    tmp_path: Path,
) -> None:
    ports = {"PORT": 8000, "METRICS_PORT": 9101, "STATS_PORT": 8404}
    errorfiles = haproxy.write_errorfiles(tmp_path)
    amended = haproxy.amend(sample(tmp_path, ports), errorfiles, "0.0.0.0")
    binds = [line.strip() for line in amended.splitlines() if line.strip().startswith("bind ")]
    assert binds == ["bind 127.0.0.1:9101", "bind *:8000", "bind 127.0.0.1:8404"]
    assert "text/plain lf-string \"Path '" not in amended
    assert f"{tmp_path}/500.http" not in amended  # Ray's text 500 for 502/503/504
    assert "timeout http-request 10s" in amended
    defaults = amended.split("\ndefaults\n", 1)[1].split("\nfrontend ", 1)[0].splitlines()
    clients = [line.strip() for line in defaults if line.strip().startswith("timeout client")]
    assert clients == ["timeout client 30s"]  # Ray's 3600s gone
    assert f"    errorfile 408 {errorfiles[408]}" in defaults  # a body's 408: JSON
    frontend = amended.split("frontend http_frontend\n", 1)[1].split("\nbackend ", 1)[0]
    assert "    option http-buffer-request" in frontend.splitlines()
    backend = amended.split("backend http-imagetagger\n", 1)[1].split("\nlisten ", 1)[0]
    (default_server,) = [line for line in backend.splitlines() if "default-server" in line]
    assert default_server.endswith(" check maxconn 300"), default_server
    assert "    timeout queue 1s" in backend.splitlines()
    assert haproxy.amend(amended, errorfiles, "0.0.0.0") == amended  # idempotent


@pytest.mark.parametrize(
    ("host", "bind"),
    [
        (None, "bind 127.0.0.1:8000"),
        ("::", "bind :::8000 v4v6"),
        ("10.1.2.3", "bind 10.1.2.3:8000"),
    ],
)
def test_amend_binds_the_service_where_asked(tmp_path: Path, host: str | None, bind: str) -> None:
    text = sample(tmp_path, {"PORT": 8000, "METRICS_PORT": 1, "STATS_PORT": 2})
    amended = haproxy.amend(text, haproxy.write_errorfiles(tmp_path), host)
    frontend = amended.split("frontend http_frontend\n", 1)[1].splitlines()
    assert frontend[0].strip() == bind


def test_errorfiles_are_contract_json_with_retry_after_on_503(tmp_path: Path) -> None:
    for code, path in haproxy.write_errorfiles(tmp_path).items():
        head, body = path.read_bytes().decode().split("\r\n\r\n", 1)
        lines = head.split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines[1:])
        assert headers["Content-Type"] == "application/json"
        assert int(headers["Content-Length"]) == len(body.encode())
        error = json.loads(body)["error"]
        assert set(error) == {"type", "detail"} and error["type"] in JSON_TYPES
        status = int(lines[0].split()[1])
        assert (status == 503) == ("Retry-After" in headers), (code, headers)
        if code >= 500:
            assert status == 503 and error["type"] == "Overloaded", code


def test_wrapper_script_runs_this_module(tmp_path: Path) -> None:
    assert haproxy.wrapper_script("/x/python").splitlines() == [
        "#!/bin/sh",
        'exec "/x/python" -m imagetagger.serving.haproxy "$@"',
    ]
    assert haproxy.config_path(["-db", "-f", "/a/haproxy.cfg", "-sf", "12"]) == Path(
        "/a/haproxy.cfg"
    )
    assert haproxy.config_path(["-v"]) is None


@contextlib.contextmanager
def running_haproxy(config: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """Ray's HAProxy on ``config``, through :func:`imagetagger.serving.haproxy.main` as the
    wrapper script runs it, until it accepts connections."""
    env = {**os.environ, haproxy.BINARY_ENV: real_haproxy_binary(os.environ)}
    process = subprocess.Popen(
        [sys.executable, "-m", "imagetagger.serving.haproxy", "-db", "-f", str(config)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            assert time.monotonic() < deadline, "HAProxy did not start"
            time.sleep(0.1)
        yield process
    finally:
        process.terminate()
        process.wait(timeout=10)


def assert_contract_json(response: requests.Response, status: int) -> dict[str, str]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json", response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"type", "detail"}, body
    if status == 503:
        assert body["error"]["type"] == "Overloaded"
        assert int(response.headers["retry-after"]) >= 1
    return body["error"]


@pytest.fixture
def replica() -> Iterator[servers.LoopbackServer]:
    """A stand-in for the ingress replica (healthy), answering as Serve's proxy does."""
    text = "text/plain; charset=utf-8"
    routes = {
        "/-/healthz": servers.respond(b"success", "text/plain"),
        "/ok": servers.respond(b'{"fine":true}', "application/json"),
        "/app-error": servers.respond(
            b'{"error":{"type":"UnreachableURL","detail":"Url cannot be reached."}}',
            "application/json",
            status_code=404,
        ),
        "/text404": servers.respond(b"Path '/x' not found.", text, status_code=404),
        "/text503": servers.respond(b"Service Unavailable", text, status_code=503),
        "/text500": servers.respond(b"Internal Server Error", text, status_code=500),
        "/text408": servers.respond(b"Request timed out", text, status_code=408),
        "/html": servers.respond(b"<html>docs</html>", "text/html"),
    }
    with servers.LoopbackServer("127.0.0.1", routes) as server:
        yield server


def _config(tmp_path: Path, replica_port: int, *, with_app: bool = True) -> tuple[Path, int]:
    port, metrics, stats, fallback = (servers.unused_port() for _ in range(4))
    ports = {
        "PORT": port,
        "METRICS_PORT": metrics,
        "STATS_PORT": stats,
        "REPLICA_PORT": replica_port,
        "FALLBACK_PORT": fallback,
    }
    path = tmp_path / "haproxy.cfg"
    path.write_text(sample(tmp_path, ports, with_app=with_app))
    return path, port


def wait_until_checked_up(backend: servers.LoopbackServer, timeout_s: float = 10.0) -> None:
    """Until HAProxy has health-checked ``backend`` up (rise 2, fastinter 250 ms): its
    third check arrives after the second passed. A fixed sleep failed on a busy machine."""

    def checks() -> int:
        return sum(1 for r in backend.requests if r.path == "/-/healthz")

    deadline = time.monotonic() + timeout_s
    while checks() < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert checks() >= 3, f"HAProxy checked the backend {checks()} times in {timeout_s} s"


def test_haproxy_answers_contract_json_for_every_error(
    tmp_path: Path, replica: servers.LoopbackServer
) -> None:
    config, port = _config(tmp_path, replica.port)
    base = f"http://127.0.0.1:{port}"
    with running_haproxy(config, port):
        wait_until_checked_up(replica)
        assert haproxy.MARK in config.read_text()  # amended before HAProxy read it
        assert requests.get(base + "/ok", timeout=5).json() == {"fine": True}
        assert requests.get(base + "/html", timeout=5).text == "<html>docs</html>"
        # The app's own JSON errors pass unchanged.
        app = assert_contract_json(requests.get(base + "/app-error", timeout=5), 404)
        assert app["type"] == "UnreachableURL"
        for path in ("/text404", "/text503", "/text500"):
            assert_contract_json(requests.get(base + path, timeout=5), 503)
        assert assert_contract_json(requests.get(base + "/text408", timeout=5), 408) == {
            "type": "RequestTimeout",
            "detail": "The request took too long to arrive.",
        }


def test_haproxy_before_any_route_and_with_no_replica_answers_json_503(
    tmp_path: Path, replica: servers.LoopbackServer
) -> None:
    config, port = _config(tmp_path, replica.port, with_app=False)
    with running_haproxy(config, port):
        for path in ("/", "/predictions?url=x"):
            assert_contract_json(requests.get(f"http://127.0.0.1:{port}{path}", timeout=5), 503)
    replica.stop()  # no replica and no fallback proxy up: HAProxy's own 503
    config, port = _config(tmp_path, servers.unused_port())
    with running_haproxy(config, port):
        assert_contract_json(requests.get(f"http://127.0.0.1:{port}/", timeout=5), 503)


def test_slow_request_headers_are_cut_at_the_timeout(
    tmp_path: Path, replica: servers.LoopbackServer
) -> None:
    config, port = _config(tmp_path, replica.port)
    text = haproxy.amend(config.read_text(), haproxy.write_errorfiles(tmp_path), None, 1)
    config.write_text(text)  # amended here with a 1 s timeout; the wrapper keeps it
    with running_haproxy(config, port), socket.create_connection(("127.0.0.1", port), 5) as raw:
        raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        started = time.monotonic()
        raw.settimeout(5)
        answer = raw.recv(4096).decode()
        took = time.monotonic() - started
    # Closed at the timeout. The answer is HAProxy's own HTML 408: its HTTP/1 parser
    # sends it before a request exists, where 2.8 uses no errorfile.
    assert answer.startswith("HTTP/1.1 408"), answer
    assert 0.8 <= took < 3, took


def test_slow_request_body_is_cut_at_the_timeout_with_json(
    tmp_path: Path, replica: servers.LoopbackServer
) -> None:
    """``option http-buffer-request``: the body's first buffer (16 KB) must arrive within
    ``timeout http-request`` too; a 1 KB/s upload gets the contract's JSON 408 before any
    replica sees it (the stand-in records every request it was sent)."""
    config, port = _config(tmp_path, replica.port)
    text = haproxy.amend(config.read_text(), haproxy.write_errorfiles(tmp_path), None, 1)
    config.write_text(text)
    with running_haproxy(config, port), socket.create_connection(("127.0.0.1", port), 5) as raw:
        time.sleep(0.6)  # health checks
        seen = len(replica.requests)
        raw.sendall(b"POST /ok HTTP/1.1\r\nHost: x\r\nContent-Length: 50000\r\n\r\n")
        started = time.monotonic()
        raw.settimeout(0.1)
        answer = b""
        while b"\r\n\r\n" not in answer and time.monotonic() - started < 5:
            with contextlib.suppress(OSError):
                raw.sendall(b"x" * 100)  # 1 KB/s
            with contextlib.suppress(TimeoutError):
                answer += raw.recv(4096)
        took = time.monotonic() - started
        forwarded = [r for r in replica.requests[seen:] if r.path != "/-/healthz"]
    head, body = answer.decode().split("\r\n\r\n", 1)
    assert head.startswith("HTTP/1.1 408"), answer
    assert "content-type: application/json" in head.lower(), head
    assert json.loads(body)["error"]["type"] == "RequestTimeout"
    assert 0.8 <= took < 3, took
    assert forwarded == [], forwarded


def test_client_timeout_does_not_cut_a_client_waiting_for_the_server(tmp_path: Path) -> None:
    """``timeout client`` (30 s) is silence while the client should send or read, not a
    deadline on the answer: with 1 s, an answer that takes 2.5 s still arrives."""
    slow = servers.delayed(servers.respond(b'{"fine":true}', "application/json"), 2.5)
    routes = {"/-/healthz": servers.respond(b"success", "text/plain"), "/slow": slow}
    with servers.LoopbackServer("127.0.0.1", routes) as backend:
        config, port = _config(tmp_path, backend.port)
        errorfiles = haproxy.write_errorfiles(tmp_path)
        config.write_text(haproxy.amend(config.read_text(), errorfiles, None, 1, 1))
        with running_haproxy(config, port):
            wait_until_checked_up(backend)
            response = requests.get(f"http://127.0.0.1:{port}/slow", timeout=10)
    assert response.status_code == 200 and response.json() == {"fine": True}
