"""Load for the overload and slow-client tests: unique photos, closed-loop clients,
slow raw-socket clients, and the service's memory. Loopback only; no Ray here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import selectors
import socket
import statistics
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from tests import servers

UNIQUE_PATH = "/unique.jpg"


def with_comment(jpeg: bytes, text: bytes) -> bytes:
    """``jpeg`` with a COM segment holding ``text``: same pixels, new bytes (no cache hit)."""
    return jpeg[:2] + b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text + jpeg[2:]


def unique_photo(jpeg: bytes) -> servers.Handler:
    """``GET /unique.jpg?n=...``: ``jpeg`` made unique by its query string."""

    async def handler(request: servers.RecordedRequest, writer: asyncio.StreamWriter) -> None:
        body = with_comment(jpeg, request.path.encode())
        await servers.respond(body, "image/jpeg")(request, writer)

    return handler


class UniqueURLs:
    """``images``'s unique photo, a new URL every call (thread-safe)."""

    def __init__(self, images: servers.LoopbackServer) -> None:
        self._base = images.url(UNIQUE_PATH)
        self._count = 0
        self._lock = threading.Lock()

    def __call__(self) -> str:
        with self._lock:
            self._count += 1
            count = self._count
        return f"{self._base}?n={os.getpid()}-{count}"


def prediction_url(base_url: str, image_url: str) -> str:
    return f"{base_url}/predictions?{urllib.parse.urlencode({'url': image_url})}"


@dataclass(frozen=True)
class Answer:
    """One request of a closed-loop client: when it started, how long it took, what came."""

    started: float
    elapsed_s: float
    status: int | None  # None: no HTTP answer (timeout, connection error)
    content_type: str = ""
    retry_after: str | None = None
    error_type: str | None = None  # the contract's error type, None if not its shape
    failure: str = ""  # the exception, when no answer came


@dataclass
class Load:
    answers: list[Answer] = field(default_factory=list)

    def by_status(self) -> Counter[str]:
        return Counter(str(a.status) if a.status is not None else a.failure for a in self.answers)

    def latencies(self, status: int = 200) -> list[float]:
        return sorted(a.elapsed_s for a in self.answers if a.status == status)


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


async def _one(session: aiohttp.ClientSession, url: str) -> Answer:
    started = time.monotonic()
    try:
        async with session.get(url) as response:
            body = await response.read()
            status, headers = response.status, response.headers
    except (TimeoutError, aiohttp.ClientError) as exc:
        return Answer(started, time.monotonic() - started, None, failure=type(exc).__name__)
    error_type = None
    if status != 200:
        with contextlib.suppress(ValueError, TypeError, KeyError):
            error = json.loads(body)["error"]
            if isinstance(error, dict) and set(error) == {"type", "detail"}:
                error_type = error["type"]
    return Answer(
        started,
        time.monotonic() - started,
        status,
        headers.get("content-type", ""),
        headers.get("retry-after"),
        error_type,
    )


def closed_loop(
    url: Callable[[], str],
    *,
    concurrency: int,
    duration_s: float,
    timeout_s: float,
    honour_retry_after: bool = False,
) -> Load:
    """``concurrency`` clients, each sending the next request when its last one answered,
    for ``duration_s`` (answers still on their way then are awaited, each within
    ``timeout_s``). With ``honour_retry_after``, a client waits as a 503 asks first."""
    load = Load()

    async def client(session: aiohttp.ClientSession, stop_at: float) -> None:
        while time.monotonic() < stop_at:
            answer = await _one(session, url())
            load.answers.append(answer)
            if honour_retry_after and answer.status == 503 and answer.retry_after:
                await asyncio.sleep(min(float(answer.retry_after), 5.0))

    async def main() -> None:
        connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            stop_at = time.monotonic() + duration_s
            await asyncio.gather(*(client(session, stop_at) for _ in range(concurrency)))

    asyncio.run(main())
    return load


def sequential_latencies(url: Callable[[], str], count: int, timeout_s: float = 60) -> list[float]:
    """``count`` requests one after another; their latencies (each must be a 200)."""
    load = Load()

    async def main() -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as s:
            for _ in range(count):
                load.answers.append(await _one(s, url()))

    asyncio.run(main())
    assert all(a.status == 200 for a in load.answers), load.by_status()
    return [a.elapsed_s for a in load.answers]


# ------------------------------------------------------------------- slow clients


@dataclass
class SlowConnection:
    """One slow client's connection: when it opened, when the server ended it, and how."""

    kind: str
    opened: float
    first: bool  # the slot's first connection (the others replace one the server ended)
    closed: float | None = None
    answer: bytes = b""


@dataclass
class _Slot:
    kind: str
    head: bytes  # sent at once
    drip: bytes  # then ``step`` bytes of it a second, from the start again at its end
    step: int
    sock: socket.socket | None = None
    record: SlowConnection | None = None
    next_send: float = 0.0
    sent: int = 0


class SlowClients:
    """Slow clients on raw sockets, in one background thread, until stopped.

    ``headers``: connections that send a request's headers one byte a second and never
    end them; ``uploads``: POSTs that declare ``upload_bytes`` and send the body 1 KB a
    second. Every connection the server ends (an answer, or closed) is recorded and
    opened again at once, so the pressure lasts as long as the clients run.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        headers: int,
        uploads: int,
        upload_bytes: int = 100_000,
    ) -> None:
        self.address = (host, port)
        boundary = "slowboundary"
        upload_head = (
            f"POST /predictions HTTP/1.1\r\nHost: {host}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {upload_bytes}\r\n\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=file; filename=x.jpg\r\n"
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        slow_head = f"GET / HTTP/1.1\r\nHost: {host}\r\nX-Slow: ".encode() + b"a" * 4096
        self._slots = [_Slot("headers", b"", slow_head, 1) for _ in range(headers)]
        self._slots += [_Slot("upload", upload_head, b"\xff" * 4096, 1024) for _ in range(uploads)]
        self.connections: list[SlowConnection] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slow-clients", daemon=True)
        self._selector = selectors.DefaultSelector()

    def __enter__(self) -> SlowClients:
        for slot in self._slots:
            self._open(slot, first=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        for slot in self._slots:
            if slot.sock is not None:
                self._selector.unregister(slot.sock)
                slot.sock.close()

    def open_now(self) -> int:
        return sum(1 for slot in self._slots if slot.sock is not None)

    def _open(self, slot: _Slot, first: bool = False) -> None:
        sock = socket.create_connection(self.address, timeout=5)
        sock.setblocking(False)
        now = time.monotonic()
        slot.sock, slot.record, slot.next_send = sock, SlowConnection(slot.kind, now, first), now
        slot.sent = 0
        self.connections.append(slot.record)
        self._selector.register(sock, selectors.EVENT_READ, slot)
        with contextlib.suppress(OSError):
            sock.sendall(slot.head)

    def _ended(self, slot: _Slot, data: bytes) -> None:
        assert slot.sock is not None and slot.record is not None
        slot.record.closed = time.monotonic()
        slot.record.answer = data
        self._selector.unregister(slot.sock)
        slot.sock.close()
        slot.sock = None
        if not self._stop.is_set():
            self._open(slot)

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(timeout=0.1):
                slot: _Slot = key.data
                try:
                    data = slot.sock.recv(4096) if slot.sock else b""
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                self._ended(slot, data or b"[closed]")
            now = time.monotonic()
            for slot in self._slots:
                if slot.sock is not None and now >= slot.next_send:
                    slot.next_send = now + 1
                    start = slot.sent % len(slot.drip)
                    try:
                        slot.sent += slot.sock.send(slot.drip[start : start + slot.step])
                    except BlockingIOError:
                        pass
                    except OSError:
                        self._ended(slot, b"[reset]")


# ------------------------------------------------------------------------ memory


def pss_bytes(pids: Sequence[int]) -> int:
    """The summed proportional set size of ``pids`` (those gone are skipped)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
                    break
    return total
