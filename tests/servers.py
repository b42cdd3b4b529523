"""Small HTTP servers on loopback addresses, run in a background thread, for tests.

Tests may only talk to 127.0.0.0/8 and ::1, so every "remote" image host in the test
suite is one of these. The server speaks just enough HTTP/1.1 (one request per
connection, ``Connection: close``) and writes raw bytes, so handlers can misbehave on
purpose: lie about Content-Length, drip bytes, hang up mid-body. Every accepted TCP
connection is counted before a byte is read, which lets a test prove that a forbidden
address was never contacted; ``peak_connections`` is the most open at once.

Usage::

    from tests import servers

    routes = {"/cat.jpg": servers.respond(data, "image/jpeg")}
    with servers.serve_routes("127.0.0.2", routes) as srv:
        url = srv.url("/cat.jpg")          # http://127.0.0.2:PORT/cat.jpg
        ...
        assert srv.requests[0].headers["user-agent"].startswith("imagetagger/")

    with servers.ConnectionCountingServer("127.0.0.1") as forbidden:
        ...                                # point the code under test at forbidden.base_url
        assert forbidden.connections == 0

Handlers are ``async (request, writer) -> None`` callables; the factories below cover
the usual cases. ``routes`` map a path (query string ignored) to a handler; other paths
get the server's ``default`` handler (404 unless given).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import ipaddress
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from types import TracebackType
from typing import Self

from imagetagger.serving.ports import kernel_free_port

__all__ = [
    "ConnectionCountingServer",
    "Handler",
    "LoopbackServer",
    "RecordedRequest",
    "chunked",
    "close_mid_body",
    "delayed",
    "gzip_encoded",
    "ipv6_loopback_available",
    "lying_length",
    "redirect",
    "redirect_chain",
    "respond",
    "serve_routes",
    "slow_drip",
    "status",
    "unused_port",
]


@dataclass(frozen=True)
class RecordedRequest:
    """What a client sent: method, path (query included) and lower-cased headers."""

    method: str
    path: str
    headers: dict[str, str]


Handler = Callable[[RecordedRequest, asyncio.StreamWriter], Awaitable[None]]

_MAX_HEAD = 64 * 1024


def _head(status_code: int, headers: Mapping[str, str]) -> bytes:
    reason = HTTPStatus(status_code).phrase if status_code in HTTPStatus._value2member_map_ else ""
    lines = [f"HTTP/1.1 {status_code} {reason}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if not any(name.lower() == "connection" for name in headers):
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


# --- handler factories -------------------------------------------------------------


def respond(
    body: bytes = b"",
    content_type: str = "application/octet-stream",
    *,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> Handler:
    """An honest response: ``body`` with a correct Content-Length."""
    all_headers = {
        "Content-Type": content_type,
        "Content-Length": str(len(body)),
        **(headers or {}),
    }

    async def handler(request: RecordedRequest, writer: asyncio.StreamWriter) -> None:
        writer.write(_head(status_code, all_headers) + body)
        await writer.drain()

    return handler


def status(status_code: int) -> Handler:
    """An empty response with the given status (404, 500, ...)."""
    return respond(b"", "text/plain", status_code=status_code)


def redirect(location: str, status_code: int = 302) -> Handler:
    """A redirect to ``location``, absolute or relative, sent verbatim."""
    return respond(b"", "text/plain", status_code=status_code, headers={"Location": location})


def redirect_chain(prefix: str, hops: int, target: str) -> dict[str, Handler]:
    """Routes ``{prefix}/1`` -> ``{prefix}/2`` -> ... -> ``{prefix}/{hops}`` -> ``target``.

    Fetching ``{prefix}/1`` takes exactly ``hops`` redirects to reach ``target``.
    """
    routes = {f"{prefix}/{i}": redirect(f"{prefix}/{i + 1}") for i in range(1, hops)}
    routes[f"{prefix}/{hops}"] = redirect(target)
    return routes


def chunked(body: bytes, chunk_size: int = 64 * 1024) -> Handler:
    """``Transfer-Encoding: chunked`` and no Content-Length: the size is known only at the end."""

    async def handler(request: RecordedRequest, writer: asyncio.StreamWriter) -> None:
        head = {"Content-Type": "application/octet-stream", "Transfer-Encoding": "chunked"}
        writer.write(_head(200, head))
        for start in range(0, len(body), chunk_size):
            piece = body[start : start + chunk_size]
            writer.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    return handler


def lying_length(claimed: int, body: bytes) -> Handler:
    """Declares ``Content-Length: claimed`` but sends ``body`` (shorter or longer), then closes."""

    async def handler(request: RecordedRequest, writer: asyncio.StreamWriter) -> None:
        head = {"Content-Type": "application/octet-stream", "Content-Length": str(claimed)}
        writer.write(_head(200, head) + body)
        await writer.drain()

    return handler


def close_mid_body(claimed: int, sent: bytes) -> Handler:
    """Declares ``claimed`` bytes, sends ``sent`` (fewer), then hangs up."""
    if len(sent) >= claimed:
        raise ValueError("close_mid_body must send fewer bytes than it claims")
    return lying_length(claimed, sent)


def slow_drip(body: bytes, interval_s: float = 1.0) -> Handler:
    """Sends ``body`` (with an honest Content-Length) one byte every ``interval_s``."""

    async def handler(request: RecordedRequest, writer: asyncio.StreamWriter) -> None:
        head = {"Content-Type": "application/octet-stream", "Content-Length": str(len(body))}
        writer.write(_head(200, head))
        await writer.drain()
        for byte in body:
            await asyncio.sleep(interval_s)
            writer.write(bytes([byte]))
            await writer.drain()

    return handler


def delayed(handler: Handler, delay_s: float) -> Handler:
    """``handler``, after ``delay_s`` of silence (a slow origin, or a slow redirect hop)."""

    async def wrapper(request: RecordedRequest, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(delay_s)
        await handler(request, writer)

    return wrapper


def gzip_encoded(raw: bytes, content_type: str = "application/octet-stream") -> Handler:
    """``raw`` gzip-compressed with ``Content-Encoding: gzip``, whatever the client asked.

    The gzip header's timestamp is fixed (``mtime=0``), so the body is the same bytes
    as :func:`gzip_bytes` of ``raw`` at any moment.
    """
    return respond(gzip_bytes(raw), content_type, headers={"Content-Encoding": "gzip"})


def gzip_bytes(raw: bytes) -> bytes:
    """``raw`` gzip-compressed, byte-for-byte reproducible (no timestamp in the header)."""
    return gzip.compress(raw, mtime=0)


# --- the server --------------------------------------------------------------------


class LoopbackServer:
    """An HTTP/1.1 server on a loopback address, in its own thread and event loop.

    ``connections`` counts accepted TCP connections (before anything is read), and
    ``peak_connections`` the most that were open at the same time;
    ``requests`` records each request that arrived. Use it as a context manager, or
    call ``start``/``stop``. Only loopback hosts are accepted.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        routes: Mapping[str, Handler] | None = None,
        *,
        port: int = 0,
        default: Handler | None = None,
    ) -> None:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"test servers bind loopback addresses only, not {host!r}")
        self.host = host
        self.port = port
        self.routes: dict[str, Handler] = dict(routes or {})
        self.default = default or status(404)
        self.requests: list[RecordedRequest] = []
        self._connections = 0
        self._open = 0
        self._peak = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def connections(self) -> int:
        """Accepted TCP connections so far."""
        with self._lock:
            return self._connections

    @property
    def peak_connections(self) -> int:
        """The most TCP connections open at once so far."""
        with self._lock:
            return self._peak

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` (IPv6 hosts in brackets), without a trailing slash."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.base_url + path

    def add_route(self, path: str, handler: Handler) -> None:
        """Add or replace a route; safe while the server runs (takes effect on the next request)."""
        self.routes[path] = handler

    def start(self) -> Self:
        if self._thread is not None:
            raise RuntimeError("server already started")
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._on_connection, self.host, self.port)
                )
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as exc:
                failure.append(exc)
                loop.close()
                ready.set()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name=f"LoopbackServer-{self.host}", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with contextlib.suppress(RuntimeError):  # loop already gone
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=5)
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        self._thread = None
        self._loop = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        with self._lock:
            self._connections += 1
            self._open += 1
            self._peak = max(self._peak, self._open)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            request = await _read_request(reader)
            if request is not None:
                self.requests.append(request)
                handler = self.routes.get(request.path.split("?", 1)[0], self.default)
                await handler(request, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client hung up; that is what some tests are about
        finally:
            # Open until the answer is written: the client cannot be done before that.
            with self._lock:
                self._open -= 1
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()


async def _read_request(reader: asyncio.StreamReader) -> RecordedRequest | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return None
    if len(head) > _MAX_HEAD:
        return None
    request_line, *header_lines = head.decode("latin-1").split("\r\n")
    method, path, _version = request_line.split(" ", 2)
    headers: dict[str, str] = {}
    for line in header_lines:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0") or 0)
    if length:
        await reader.readexactly(length)  # drain a request body; nothing here uses it
    return RecordedRequest(method=method, path=path, headers=headers)


class ConnectionCountingServer(LoopbackServer):
    """A server that must never be reached: any path answers 200, every connection counts.

    Point the code under test at it and assert ``connections == 0``. Answering 200
    (rather than refusing) makes a broken guard visible as a successful fetch too.
    """

    def __init__(self, host: str = "127.0.0.1", *, port: int = 0) -> None:
        super().__init__(host, port=port, default=respond(b"reached", "text/plain"))


@contextlib.contextmanager
def serve_routes(
    host: str, routes: Mapping[str, Handler], *, default: Handler | None = None
) -> Iterator[LoopbackServer]:
    """Run a ``LoopbackServer`` on ``host`` for the duration of a ``with`` block."""
    with LoopbackServer(host, routes, default=default) as server:
        yield server


unused_port = kernel_free_port  # for refused connections and servers started at once


def ipv6_loopback_available() -> bool:
    """Whether ``::1`` can be bound here (some containers have no IPv6)."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True
