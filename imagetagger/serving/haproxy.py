"""HAProxy as ``imagetagger serve`` runs it: Ray's config, amended, then Ray's binary.

Ray Serve (2.60) writes HAProxy's whole config from a template of its own
(``ray/serve/_private/haproxy_templates.py``) and offers no hook into it but the
binary it runs (``RAY_SERVE_HAPROXY_BINARY_PATH``). Left as Ray writes it, HAProxy

- listens on all interfaces for its stats page (``listen stats``: ``bind *:PORT``)
  and its Prometheus exporter (``frontend prometheus``: ``bind :PORT``, rendered
  even with metrics off), and on the Serve config's ``http_options.host`` for the
  service, a host every ingress replica's own HTTP server binds too;
- answers in plain text while nothing is deployed (``Path '/' not found. Ping
  http://.../-/routes``), answers its own 502/503/504 with a text 500, and passes on
  the text answers of Serve's Python fallback proxy (its 404 before it knows the
  routes, its 503s and 500s while replicas start or die);
- waits an hour (``timeout client 3600s``) for a client's request headers, and as
  long for each byte of a body; it forwards a body as it trickles in, so a slow
  upload holds one of the ingress replica's ``max_ongoing_requests`` slots throughout.

So ``imagetagger serve`` points ``RAY_SERVE_HAPROXY_BINARY_PATH`` at a two-line shell
script that runs :func:`main`: it amends the config file HAProxy was given (under
Ray's own lock on it), then ``exec``s the real binary with the same arguments, so
the process Ray tracks is HAProxy itself. The amendments (:func:`amend`): stats and
exporter on 127.0.0.1; the service's bind moved to ``$IMAGETAGGER_HAPROXY_BIND``
(Serve itself stays on loopback); every non-JSON error answer, made by HAProxy or
passed on from a backend, replaced by the contract's JSON (a 503 ``Overloaded`` with
``Retry-After`` while the service is not ready); slow clients cut (docs/SECURITY.md,
*Slow clients*): ``timeout http-request`` for the headers and, with ``option
http-buffer-request`` on the service's frontend, for the first buffer (16 KB) of a body
too, before any replica sees the request (a 408, JSON for a body); ``timeout client``
down from an hour to 30 s of silence; at most 300 requests at once at each ingress
replica (``maxconn``), a request beyond them answered 503 after 1 s in HAProxy's queue.

No Ray here (this runs at every HAProxy reload, and the library never imports Ray).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from imagetagger.environment import HAPROXY_BINARY_ENV as BINARY_ENV
from imagetagger.environment import HAPROXY_BIND_ENV as BIND_ENV
from imagetagger.environment import HAPROXY_CLIENT_TIMEOUT_ENV as CLIENT_TIMEOUT_ENV
from imagetagger.environment import HAPROXY_HTTP_REQUEST_TIMEOUT_ENV as HTTP_REQUEST_TIMEOUT_ENV
from imagetagger.environment import HAPROXY_SERVER_MAXCONN_ENV as SERVER_MAXCONN_ENV
from imagetagger.errors import Overloaded, RequestTimeout
from imagetagger.limits import HAPROXY_MAXCONN

# A client has this long to send its request headers and the first buffer of its body
# (tune.bufsize, 16 KB; all of a smaller body): slowloris and slow uploads get a 408.
DEFAULT_HTTP_REQUEST_TIMEOUT_S = 10
# The longest a client may stay silent while it is expected to send (the rest of a body)
# or read (the answer). Not a deadline for the processing: HAProxy does not apply it
# while the client waits for the server (tests/unit/serving/test_haproxy.py), so it
# needs no room for the ingress's request_timeout_s.
DEFAULT_CLIENT_TIMEOUT_S = 30
# Requests HAProxy has at one ingress replica at once: above the ingress's max_in_flight
# (256: the app answers its own JSON 503 past it) and below Serve's max_ongoing_requests
# (320), so Serve's own queue never fills (the chain: imagetagger/limits.py; `imagetagger
# serve` sets $IMAGETAGGER_HAPROXY_SERVER_MAXCONN for its config's). A request beyond it waits
# in HAProxy's queue at most QUEUE_TIMEOUT_S, then gets the JSON 503 `Overloaded`: a
# flood is turned away by HAProxy (C, microseconds a request) instead of lining up for
# the ingress's Python event loop (milliseconds a request), where at 512 closed-loop
# clients on 2 cores a request waited ~10 s before the app could even refuse it.
DEFAULT_SERVER_MAXCONN = HAPROXY_MAXCONN
QUEUE_TIMEOUT_S = 1
LOOPBACK = "127.0.0.1"

NOT_READY_DETAIL = "The service is starting, stopping or has no ready replica; retry later."


def error_bodies() -> dict[int, tuple[int, dict[str, str], dict[str, object]]]:
    """HAProxy status -> (status sent, extra headers, JSON body) of its error answers.

    502/503/504 (no replica answered: starting, stopping, died) become the contract's
    503 ``Overloaded`` with ``Retry-After``, as ``Overloaded`` answers from the app do.
    """
    overloaded = Overloaded(NOT_READY_DETAIL)
    unavailable = (503, overloaded.headers, {"error": overloaded.to_dict()})
    return {
        408: (408, {}, {"error": RequestTimeout().to_dict()}),
        500: unavailable,
        502: unavailable,
        503: unavailable,
        504: unavailable,
    }


REASONS = {408: "Request Timeout", 503: "Service Unavailable"}


def errorfile_text(status: int, headers: Mapping[str, str], body: Mapping[str, object]) -> str:
    """A raw HTTP response, as HAProxy's ``errorfile`` wants it."""
    payload = json.dumps(body, separators=(",", ":"))
    lines = [
        f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}",
        "Content-Type: application/json",
        f"Content-Length: {len(payload.encode())}",
        "Cache-Control: no-store",
        *(f"{name}: {value}" for name, value in headers.items()),
        "",
        payload,
    ]
    return "\r\n".join(lines)


def write_errorfiles(directory: Path) -> dict[int, Path]:
    """One errorfile per status HAProxy may answer with, in ``directory``; their paths."""
    paths: dict[int, Path] = {}
    for code, (status, headers, body) in error_bodies().items():
        path = directory / f"imagetagger-{code}.http"
        text = errorfile_text(status, headers, body)
        with contextlib.suppress(OSError):
            if path.read_text() == text:
                paths[code] = path
                continue
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(path)
        paths[code] = path
    return paths


def _sections(text: str) -> list[list[str]]:
    """The config's lines grouped by section (``global``, ``frontend x``, ...)."""
    sections: list[list[str]] = [[]]
    for line in text.splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            sections.append([])
        sections[-1].append(line)
    return [section for section in sections if section]


_BIND = re.compile(r"^(\s*)bind\s+(\S+)(.*)$")
MARK = "# imagetagger:"


def _bind_host(address: str, host: str) -> str:
    """``address`` (``*:80``, ``:80``, ``1.2.3.4:80``) with its host replaced."""
    port = address.rsplit(":", 1)[1]
    if host in ("0.0.0.0", "*", ""):
        return f"*:{port}"
    if ":" in host:  # IPv6: HAProxy reads the port after the last colon
        return f"{host.strip('[]')}:{port}" + (" v4v6" if host.strip("[]") == "::" else "")
    return f"{host}:{port}"


def _rebind(section: list[str], host: str) -> list[str]:
    out = []
    for line in section:
        match = _BIND.match(line)
        if match:
            indent, address, rest = match.groups()
            line = f"{indent}bind {_bind_host(address, host)}{rest}"
        out.append(line)
    return out


def amend(
    text: str,
    errorfiles: Mapping[int, Path],
    public_host: str | None = None,
    http_request_timeout_s: int = DEFAULT_HTTP_REQUEST_TIMEOUT_S,
    client_timeout_s: int = DEFAULT_CLIENT_TIMEOUT_S,
    server_maxconn: int = DEFAULT_SERVER_MAXCONN,
) -> str:
    """Ray's HAProxy config with the changes the module docstring lists.

    Idempotent (a config amended twice is amended once), and a section Ray no longer
    writes is simply not changed: HAProxy still starts, and the listening-socket and
    start-up tests say what no longer holds.
    """
    if MARK in text:
        return text
    out: list[str] = [f"{MARK} amended by imagetagger.serving.haproxy (docs/SECURITY.md)"]
    for section in _sections(text):
        head = section[0].split()
        kind, name = head[0], (head[1] if len(head) > 1 else "")
        if (kind, name) in (("frontend", "prometheus"), ("listen", "stats")):
            section = _rebind(section, LOOPBACK)
        elif kind == "defaults":
            # HAProxy's own answers on a stream (no server, server gone, timeout, a body
            # that did not arrive in time). Those its HTTP/1 parser sends before a
            # request exists (400 for bytes that are not HTTP, 408 for headers that never
            # end) stay HAProxy's HTML: 2.8 ignores errorfiles there
            # (tests/unit/serving/test_haproxy.py).
            section = [line for line in section if not line.strip().startswith("errorfile ")]
            section += [f"    errorfile {code} {path}" for code, path in errorfiles.items()]
            if not any(line.strip().startswith("timeout http-request") for line in section):
                section.append(f"    timeout http-request {http_request_timeout_s}s")
            # Ray's is an hour.
            section = [line for line in section if not line.strip().startswith("timeout client ")]
            section.append(f"    timeout client {client_timeout_s}s")
        elif (kind, name) == ("frontend", "http_frontend"):
            if public_host is not None:
                section = _rebind(section, public_host)
            section = _json_from_backends(section, errorfiles)
            # Wait for the body (up to a buffer) before choosing a server, within
            # `timeout http-request`: a slow upload is cut here, never reaching a replica.
            section.append("    option http-buffer-request")
        elif kind == "backend" and name.startswith("http-"):  # an application's replicas
            section = _limit_servers(section, server_maxconn)
        elif (kind, name) == ("backend", "default_backend"):
            # Nothing is deployed on this path: not ready yet (or any more).
            section = [section[0], f"    http-request return errorfile {errorfiles[503]}"]
        out.extend(section)
    return "\n".join(out) + "\n"


def _limit_servers(section: list[str], maxconn: int) -> list[str]:
    """Every server of a backend at most ``maxconn`` requests at once; a request queued
    for one is answered 503 (the errorfile's JSON) after ``QUEUE_TIMEOUT_S``."""
    out = [line for line in section if not line.strip().startswith("timeout queue")]
    for index, line in enumerate(out):
        if line.strip().startswith("default-server ") and " maxconn " not in f"{line} ":
            out[index] = f"{line} maxconn {maxconn}"
            break
    else:
        out.append(f"    default-server maxconn {maxconn}")
    out.append(f"    timeout queue {QUEUE_TIMEOUT_S}s")
    return out


def _json_from_backends(section: list[str], errorfiles: Mapping[int, Path]) -> list[str]:
    """Replace backends' non-JSON error answers (Serve's Python proxy writes text)."""
    not_json = "!{ res.hdr(content-type) -m sub json }"
    rules = [
        f"    http-response return errorfile {errorfiles[503]} "
        f"if {{ status 404 500 502 503 504 }} {not_json}",
        f"    http-response return errorfile {errorfiles[408]} if {{ status 408 }} {not_json}",
    ]
    for index, line in enumerate(section):
        if _BIND.match(line):
            return [*section[: index + 1], *rules, *section[index + 1 :]]
    return [*section, *rules]


def config_path(argv: Sequence[str]) -> Path | None:
    """The file after ``-f`` in HAProxy's arguments."""
    for index, arg in enumerate(argv[:-1]):
        if arg == "-f":
            return Path(argv[index + 1])
    return None


def amend_file(path: Path, environ: Mapping[str, str]) -> None:
    """Amend ``path`` in place, under the lock Ray takes to write it."""
    errorfiles = write_errorfiles(path.parent)
    timeout_s = int(environ.get(HTTP_REQUEST_TIMEOUT_ENV) or DEFAULT_HTTP_REQUEST_TIMEOUT_S)
    client_s = int(environ.get(CLIENT_TIMEOUT_ENV) or DEFAULT_CLIENT_TIMEOUT_S)
    maxconn = int(environ.get(SERVER_MAXCONN_ENV) or DEFAULT_SERVER_MAXCONN)
    with open(f"{path}.lock", "w") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            text = path.read_text()
            amended = amend(
                text, errorfiles, environ.get(BIND_ENV) or None, timeout_s, client_s, maxconn
            )
            if amended != text:
                tmp = path.with_name(path.name + ".imagetagger")
                tmp.write_text(amended)
                tmp.replace(path)
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def wrapper_script(python: str) -> str:
    """The executable ``RAY_SERVE_HAPROXY_BINARY_PATH`` names: this module's :func:`main`."""
    return f'#!/bin/sh\nexec "{python}" -m imagetagger.serving.haproxy "$@"\n'


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> None:
    """Amend the config HAProxy is given, then become HAProxy (same pid, same argv)."""
    args = list(sys.argv[1:] if argv is None else argv)
    env = os.environ if environ is None else environ
    binary = env.get(BINARY_ENV)
    if not binary:
        raise SystemExit(
            f"imagetagger.serving.haproxy: ${BINARY_ENV} (the real HAProxy) is not set"
        )
    path = config_path(args)
    if path is not None and path.is_file():
        amend_file(path, env)
    os.execv(binary, [binary, *args])


if __name__ == "__main__":
    main()
