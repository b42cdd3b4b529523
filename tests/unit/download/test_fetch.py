"""ImageFetcher against real loopback servers: limits, redirects, errors, and the address guard.

The "image host" runs on 127.0.0.2, which the fetcher's policy exempts; a server that
must never be contacted runs on 127.0.0.1 and counts connections. Host names are
resolved by a stub resolver, so no test ever asks a real DNS server anything.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from imagetagger import __version__
from imagetagger.download import fetch as fetch_module
from imagetagger.download.fetch import FetchLimits, ImageFetcher, fetcher_from_settings
from imagetagger.download.netguard import AddressPolicy, GuardedConnector
from imagetagger.errors import ForbiddenURL, ImageTooLarge, UnreachableURL
from imagetagger.settings import DownloaderSettings
from tests import servers

ORIGIN_HOST = "127.0.0.2"
ALLOWED = [f"{ORIGIN_HOST}/32"]
IMAGE = bytes(range(256)) * 40  # 10 KiB of "image"
SMALL = FetchLimits(max_bytes=1000, timeout_s=5.0, max_redirects=5)


class StubResolver(AbstractResolver):
    """Answers from a table, like aiohttp's ThreadedResolver would; unknown names fail."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.calls: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.calls.append(host)
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=socket.IPPROTO_TCP,
                flags=socket.AI_NUMERICHOST,
            )
            for address in self.table[host]
        ]

    async def close(self) -> None:
        pass


def fetch(
    url: str,
    *,
    allowed: list[str] = ALLOWED,
    limits: FetchLimits = SMALL,
    resolver: AbstractResolver | None = None,
) -> bytes:
    """One fetch on a fresh fetcher in a fresh event loop."""

    async def run() -> bytes:
        fetcher = ImageFetcher(AddressPolicy(allowed), limits, resolver=resolver)
        try:
            return await fetcher.fetch(url)
        finally:
            await fetcher.close()

    return asyncio.run(run())


@pytest.fixture
def origin() -> Iterator[servers.LoopbackServer]:
    routes = {
        "/img": servers.respond(IMAGE[:800], "image/png"),
        "/big": servers.respond(IMAGE, "image/png"),
    }
    with servers.serve_routes(ORIGIN_HOST, routes) as server:
        yield server


@pytest.fixture
def forbidden() -> Iterator[servers.ConnectionCountingServer]:
    with servers.ConnectionCountingServer("127.0.0.1") as server:
        yield server


# --- the happy path ----------------------------------------------------------------


def test_fetch_returns_the_exact_body(origin: servers.LoopbackServer) -> None:
    assert fetch(origin.url("/img")) == IMAGE[:800]
    request = origin.requests[0]
    assert (request.method, request.path) == ("GET", "/img")
    assert request.headers["user-agent"] == f"imagetagger/{__version__}"
    assert request.headers["accept-encoding"] == "identity"
    assert "cookie" not in request.headers


def test_body_of_exactly_max_bytes_is_accepted(origin: servers.LoopbackServer) -> None:
    origin.add_route("/exact", servers.respond(IMAGE[:1000]))
    origin.add_route("/exact-chunked", servers.chunked(IMAGE[:1000], chunk_size=300))
    assert fetch(origin.url("/exact")) == IMAGE[:1000]
    assert fetch(origin.url("/exact-chunked")) == IMAGE[:1000]


def test_defaults() -> None:
    limits = FetchLimits()
    assert (limits.max_bytes, limits.timeout_s, limits.max_redirects) == (20 * 2**20, 10.0, 5)
    assert limits.max_connections_per_host == 8
    assert ImageFetcher(AddressPolicy([])).limits == limits
    with pytest.raises(dataclasses.FrozenInstanceError):
        limits.max_bytes = 1  # type: ignore[misc]


def test_fetcher_from_settings_takes_every_downloader_limit() -> None:
    settings = DownloaderSettings(
        allowed_networks=["10.1.0.0/16"],
        max_image_bytes=1234,
        timeout_s=2.5,
        max_connections_per_host=3,
    )
    fetcher = fetcher_from_settings(settings)
    assert fetcher.limits == FetchLimits(max_bytes=1234, timeout_s=2.5, max_connections_per_host=3)
    assert fetcher.policy == AddressPolicy(["10.1.0.0/16"])
    assert fetcher.policy.is_allowed("10.1.2.3")
    assert not fetcher_from_settings(DownloaderSettings()).policy.is_allowed("10.1.2.3")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_bytes": 0},
        {"timeout_s": 0},
        {"timeout_s": -1.0},
        {"max_redirects": -1},
        {"max_connections_per_host": 0},
    ],
)
def test_invalid_limits_raise(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        FetchLimits(**kwargs)


# --- the address guard -------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "2130706433",
        "0x7f000001",
        "0177.0.0.1",
        "127.1",
        "0",
        "0.0.0.0",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
    ],
)
def test_loopback_in_any_numeric_form_is_forbidden_and_never_contacted(
    forbidden: servers.ConnectionCountingServer, host: str
) -> None:
    with pytest.raises(ForbiddenURL) as caught:
        fetch(f"http://{host}:{forbidden.port}/secret")
    assert forbidden.connections == 0
    # Refused while resolving (GuardedConnector._resolve_host), not by the socket guard
    # behind it: if aiohttp ever stops calling that hook, this fails.
    assert caught.value.__cause__ is None


class _ResolveFilterBypassed(GuardedConnector):
    """As if aiohttp stopped calling ``_resolve_host``: only the socket guard is left."""

    async def _resolve_host(self, host: str, port: int, traces: Any = None) -> Any:
        return await super(GuardedConnector, self)._resolve_host(host, port, traces=traces)


def test_socket_guard_refusal_also_surfaces_as_forbidden(
    forbidden: servers.ConnectionCountingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fetch_module, "GuardedConnector", _ResolveFilterBypassed)
    with pytest.raises(ForbiddenURL):
        fetch(forbidden.url("/secret"))
    assert forbidden.connections == 0


@pytest.mark.skipif(not servers.ipv6_loopback_available(), reason="no IPv6 loopback")
def test_ipv6_loopback_is_forbidden_and_never_contacted() -> None:
    with servers.ConnectionCountingServer("::1") as forbidden6:
        with pytest.raises(ForbiddenURL):
            fetch(forbidden6.url("/secret"))
        with pytest.raises(ForbiddenURL):
            fetch(forbidden6.url("/secret"), allowed=["127.0.0.0/8"])
        assert fetch(forbidden6.url("/x"), allowed=["::1/128"]) == b"reached"
        assert forbidden6.connections == 1


def test_allowed_networks_exempt_loopback(forbidden: servers.ConnectionCountingServer) -> None:
    assert fetch(f"http://2130706433:{forbidden.port}/x", allowed=["127.0.0.1/32"]) == b"reached"
    assert forbidden.connections == 1
    assert forbidden.requests[0].headers["host"] == f"2130706433:{forbidden.port}"


def test_empty_policy_forbids_the_origin_too(origin: servers.LoopbackServer) -> None:
    with pytest.raises(ForbiddenURL):
        fetch(origin.url("/img"), allowed=[])
    assert origin.connections == 0


@pytest.mark.parametrize("form", ["canonical", "decimal", "mapped"])
def test_redirect_to_forbidden_address_is_forbidden_and_never_contacted(
    origin: servers.LoopbackServer, forbidden: servers.ConnectionCountingServer, form: str
) -> None:
    host = {"canonical": "127.0.0.1", "decimal": "2130706433", "mapped": "[::ffff:127.0.0.1]"}
    origin.add_route("/go", servers.redirect(f"http://{host[form]}:{forbidden.port}/secret"))
    with pytest.raises(ForbiddenURL):
        fetch(origin.url("/go"))
    assert [r.path for r in origin.requests] == ["/go"]
    assert forbidden.connections == 0


def test_host_name_resolving_to_forbidden_address_is_forbidden(
    forbidden: servers.ConnectionCountingServer,
) -> None:
    resolver = StubResolver({"evil.test": ["127.0.0.1", "::1"]})
    with pytest.raises(ForbiddenURL):
        fetch(f"http://evil.test:{forbidden.port}/", resolver=resolver)
    assert resolver.calls == ["evil.test"]
    assert forbidden.connections == 0


def test_only_allowed_addresses_of_a_name_are_connected_to(
    origin: servers.LoopbackServer,
) -> None:
    # Same port on both addresses, so a connection to the wrong one would succeed too.
    with servers.ConnectionCountingServer("127.0.0.1", port=origin.port) as same_port:
        resolver = StubResolver({"mixed.test": ["127.0.0.1", ORIGIN_HOST, "127.0.0.1"]})
        assert fetch(f"http://mixed.test:{origin.port}/img", resolver=resolver) == IMAGE[:800]
        assert same_port.connections == 0
    assert origin.requests[0].headers["host"] == f"mixed.test:{origin.port}"


def test_redirect_to_a_name_resolving_to_forbidden_address_is_forbidden(
    origin: servers.LoopbackServer, forbidden: servers.ConnectionCountingServer
) -> None:
    resolver = StubResolver({"images.test": [ORIGIN_HOST], "metadata.test": ["127.0.0.1"]})
    origin.add_route("/go", servers.redirect(f"http://metadata.test:{forbidden.port}/"))
    with pytest.raises(ForbiddenURL):
        fetch(f"http://images.test:{origin.port}/go", resolver=resolver)
    assert resolver.calls == ["images.test", "metadata.test"]
    assert forbidden.connections == 0


def test_environment_proxy_is_ignored(
    origin: servers.LoopbackServer,
    forbidden: servers.ConnectionCountingServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, forbidden.base_url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert fetch(origin.url("/img")) == IMAGE[:800]
    assert forbidden.connections == 0


# --- unreachable -------------------------------------------------------------------


@pytest.mark.parametrize("code", [404, 500, 403, 304])
def test_non_2xx_status_is_unreachable(origin: servers.LoopbackServer, code: int) -> None:
    origin.add_route("/status", servers.status(code))
    with pytest.raises(UnreachableURL) as caught:
        fetch(origin.url("/status"))
    assert caught.value.detail == "Url cannot be reached."


def test_closed_port_is_unreachable() -> None:
    port = servers.unused_port(ORIGIN_HOST)
    with pytest.raises(UnreachableURL):
        fetch(f"http://{ORIGIN_HOST}:{port}/img")


def test_dns_failure_is_unreachable() -> None:
    resolver = StubResolver({})
    with pytest.raises(UnreachableURL):
        fetch("http://nonexistent.invalid/img.jpg", resolver=resolver)
    assert resolver.calls == ["nonexistent.invalid"]


def test_connection_closed_mid_body_is_unreachable(origin: servers.LoopbackServer) -> None:
    origin.add_route("/cut", servers.close_mid_body(claimed=800, sent=IMAGE[:300]))
    with pytest.raises(UnreachableURL):
        fetch(origin.url("/cut"))


@pytest.mark.parametrize(
    "url",
    [
        "ftp://127.0.0.2/img",
        "file:///etc/passwd",
        "gopher://127.0.0.2:70/",
        "127.0.0.2/img",
        "http:///img",
        "http://[::1",
        "",
    ],
)
def test_non_http_or_malformed_url_is_unreachable(origin: servers.LoopbackServer, url: str) -> None:
    with pytest.raises(UnreachableURL):
        fetch(url)
    assert origin.connections == 0


def test_slow_drip_is_cut_at_the_total_timeout(origin: servers.LoopbackServer) -> None:
    # Each byte arrives well within any per-read timeout; only a whole-download deadline stops it.
    origin.add_route("/drip", servers.slow_drip(IMAGE[:20], interval_s=0.25))
    limits = FetchLimits(max_bytes=1000, timeout_s=1.0)
    started = time.monotonic()
    with pytest.raises(UnreachableURL):
        fetch(origin.url("/drip"), limits=limits)
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 1.6, elapsed


def test_timeout_covers_the_whole_download_across_redirects(
    origin: servers.LoopbackServer,
) -> None:
    # Three hops of 0.6 s each: every hop alone is within 1.5 s, the download is not.
    origin.add_route("/d1", servers.delayed(servers.redirect("/d2"), 0.6))
    origin.add_route("/d2", servers.delayed(servers.redirect("/d3"), 0.6))
    origin.add_route("/d3", servers.delayed(servers.respond(IMAGE[:8]), 0.6))
    started = time.monotonic()
    with pytest.raises(UnreachableURL):
        fetch(origin.url("/d1"), limits=FetchLimits(max_bytes=1000, timeout_s=1.5))
    assert 1.4 <= time.monotonic() - started < 2.1
    assert fetch(origin.url("/d2"), limits=FetchLimits(max_bytes=1000, timeout_s=1.5))


# --- redirects ---------------------------------------------------------------------


def test_five_redirects_are_followed(origin: servers.LoopbackServer) -> None:
    for path, handler in servers.redirect_chain("/chain", 5, "/img").items():
        origin.add_route(path, handler)
    assert fetch(origin.url("/chain/1")) == IMAGE[:800]
    assert [r.path for r in origin.requests] == [f"/chain/{i}" for i in range(1, 6)] + ["/img"]


def test_six_redirects_are_unreachable(origin: servers.LoopbackServer) -> None:
    for path, handler in servers.redirect_chain("/chain", 6, "/img").items():
        origin.add_route(path, handler)
    with pytest.raises(UnreachableURL):
        fetch(origin.url("/chain/1"))
    assert [r.path for r in origin.requests] == [f"/chain/{i}" for i in range(1, 7)]


def test_max_redirects_zero_follows_none(origin: servers.LoopbackServer) -> None:
    origin.add_route("/once", servers.redirect("/img"))
    with pytest.raises(UnreachableURL):
        fetch(origin.url("/once"), limits=dataclasses.replace(SMALL, max_redirects=0))
    assert fetch(origin.url("/img"), limits=dataclasses.replace(SMALL, max_redirects=0))


def test_redirect_loop_is_unreachable(origin: servers.LoopbackServer) -> None:
    origin.add_route("/loop", servers.redirect("/loop"))
    with pytest.raises(UnreachableURL):
        fetch(origin.url("/loop"))
    assert len(origin.requests) == SMALL.max_redirects + 1


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
@pytest.mark.parametrize(
    ("path", "location"),
    [
        ("/a/b/c", "../../img"),
        ("/a/b", "img2"),
        ("/a", "/img"),
        ("/a", "//{host}/img"),
        ("/a", "http://{host}/img#fragment"),
    ],
)
def test_redirect_locations_are_resolved_against_the_current_url(
    origin: servers.LoopbackServer, code: int, path: str, location: str
) -> None:
    origin.add_route("/a/img2", servers.respond(IMAGE[:800]))
    host = f"{ORIGIN_HOST}:{origin.port}"
    origin.add_route(path, servers.redirect(location.format(host=host), status_code=code))
    assert fetch(origin.url(path)) == IMAGE[:800]
    assert origin.requests[-1].path in {"/img", "/a/img2"}


@pytest.mark.parametrize(
    "location", ["file:///etc/passwd", "ftp://127.0.0.2/img", "javascript:alert(1)", "data:,x"]
)
def test_redirect_to_non_http_scheme_is_unreachable(
    origin: servers.LoopbackServer, location: str
) -> None:
    origin.add_route("/go", servers.redirect(location))
    with pytest.raises(UnreachableURL):
        fetch(origin.url("/go"))
    assert len(origin.requests) == 1


def test_redirect_without_location_is_unreachable(origin: servers.LoopbackServer) -> None:
    origin.add_route("/go", servers.status(302))
    with pytest.raises(UnreachableURL):
        fetch(origin.url("/go"))


# --- size limits -------------------------------------------------------------------


def test_honest_content_length_over_the_limit_is_too_large(
    origin: servers.LoopbackServer,
) -> None:
    with pytest.raises(ImageTooLarge) as caught:
        fetch(origin.url("/big"))
    assert caught.value.detail == "Image is larger than 1000 bytes."
    origin.add_route("/one-more", servers.respond(IMAGE[:1001]))
    with pytest.raises(ImageTooLarge):
        fetch(origin.url("/one-more"))


def test_declared_length_fails_before_the_body_arrives(origin: servers.LoopbackServer) -> None:
    origin.add_route("/drip", servers.slow_drip(IMAGE[:1001], interval_s=1.0))
    started = time.monotonic()
    with pytest.raises(ImageTooLarge):
        fetch(origin.url("/drip"))
    assert time.monotonic() - started < 0.9


def test_absent_content_length_over_the_limit_is_too_large(
    origin: servers.LoopbackServer,
) -> None:
    origin.add_route("/chunked", servers.chunked(IMAGE, chunk_size=100))
    origin.add_route("/chunked-one-more", servers.chunked(IMAGE[:1001], chunk_size=1001))
    with pytest.raises(ImageTooLarge):
        fetch(origin.url("/chunked"))
    with pytest.raises(ImageTooLarge):
        fetch(origin.url("/chunked-one-more"))


def test_huge_chunked_body_is_abandoned_at_the_limit(origin: servers.LoopbackServer) -> None:
    origin.add_route("/flood", servers.chunked(b"\0" * (64 * 2**20), chunk_size=2**20))
    started = time.monotonic()
    with pytest.raises(ImageTooLarge):
        fetch(origin.url("/flood"), limits=FetchLimits(max_bytes=2**20, timeout_s=5.0))
    assert time.monotonic() - started < 2.0


def test_content_length_claiming_huge_is_too_large(origin: servers.LoopbackServer) -> None:
    origin.add_route("/claims-huge", servers.lying_length(claimed=10**12, body=IMAGE[:10]))
    with pytest.raises(ImageTooLarge):
        fetch(origin.url("/claims-huge"))


def test_content_length_claiming_small_never_yields_more(origin: servers.LoopbackServer) -> None:
    # aiohttp frames the body by Content-Length: the extra bytes are a protocol error
    # ("data after Connection: close"), never part of the image.
    origin.add_route("/claims-small", servers.lying_length(claimed=10, body=IMAGE * 100))
    with pytest.raises(UnreachableURL):
        fetch(origin.url("/claims-small"))


def test_gzip_body_is_not_decompressed(origin: servers.LoopbackServer) -> None:
    bomb = b"\0" * (10 * 2**20)  # 10 MiB of zeros, about 10 KiB compressed
    origin.add_route("/bomb", servers.gzip_encoded(bomb))
    body = fetch(origin.url("/bomb"), limits=FetchLimits(max_bytes=2**20))
    assert body == servers.gzip_bytes(bomb)
    assert len(body) < 2**20
    assert origin.requests[0].headers["accept-encoding"] == "identity"


# --- the fetcher's lifecycle ---------------------------------------------------------


def test_session_is_reused_and_cookies_are_not_kept(origin: servers.LoopbackServer) -> None:
    # A host name, not an IP: aiohttp's default jar would keep this cookie and send it back.
    origin.add_route(
        "/cookie", servers.respond(IMAGE[:10], headers={"Set-Cookie": "session=secret; Path=/"})
    )
    resolver = StubResolver({"images.test": [ORIGIN_HOST]})

    async def run() -> None:
        fetcher = ImageFetcher(AddressPolicy(ALLOWED), SMALL, resolver=resolver)
        try:
            await fetcher.fetch(f"http://images.test:{origin.port}/cookie")
            session = fetcher._pool.session if fetcher._pool else None
            assert await fetcher.fetch(f"http://images.test:{origin.port}/img") == IMAGE[:800]
            assert fetcher._pool is not None and fetcher._pool.session is session
        finally:
            await fetcher.close()

    asyncio.run(run())
    assert [r.path for r in origin.requests] == ["/cookie", "/img"]
    assert "cookie" not in origin.requests[1].headers


def test_configure_applies_policy_and_limits_live(origin: servers.LoopbackServer) -> None:
    async def run() -> None:
        fetcher = ImageFetcher(AddressPolicy([]), SMALL)
        try:
            with pytest.raises(ForbiddenURL):
                await fetcher.fetch(origin.url("/img"))
            fetcher.configure(AddressPolicy(ALLOWED), SMALL)
            assert await fetcher.fetch(origin.url("/img")) == IMAGE[:800]
            fetcher.configure(AddressPolicy(ALLOWED), FetchLimits(max_bytes=100))
            with pytest.raises(ImageTooLarge):
                await fetcher.fetch(origin.url("/img"))
            fetcher.configure(AddressPolicy([]), SMALL)
            with pytest.raises(ForbiddenURL):
                await fetcher.fetch(origin.url("/img"))
            assert fetcher.policy == AddressPolicy([])
        finally:
            await fetcher.close()

    asyncio.run(run())
    assert origin.connections == 2


def test_configure_lets_in_flight_fetches_finish_then_closes_their_session(
    origin: servers.LoopbackServer,
) -> None:
    origin.add_route("/drip", servers.slow_drip(IMAGE[:4], interval_s=0.1))

    async def run() -> None:
        fetcher = ImageFetcher(AddressPolicy(ALLOWED), SMALL)
        try:
            in_flight = asyncio.create_task(fetcher.fetch(origin.url("/drip")))
            await asyncio.sleep(0.15)
            assert fetcher._pool is not None
            old_session = fetcher._pool.session
            fetcher.configure(AddressPolicy(ALLOWED), FetchLimits(max_bytes=2))
            assert not old_session.closed
            assert await in_flight == IMAGE[:4]  # finished under the limits it started with
            assert old_session.closed
            with pytest.raises(ImageTooLarge):
                await fetcher.fetch(origin.url("/drip"))
        finally:
            await fetcher.close()

    asyncio.run(run())


def test_close_refuses_further_fetches(origin: servers.LoopbackServer) -> None:
    async def run() -> None:
        fetcher = ImageFetcher(AddressPolicy(ALLOWED), SMALL)
        assert await fetcher.fetch(origin.url("/img")) == IMAGE[:800]
        assert fetcher._pool is not None
        session = fetcher._pool.session
        assert not fetcher.closed
        await fetcher.close()
        assert fetcher.closed and session.closed
        with pytest.raises(RuntimeError, match="closed"):
            await fetcher.fetch(origin.url("/img"))

    asyncio.run(run())


def test_fetcher_survives_a_new_event_loop(origin: servers.LoopbackServer) -> None:
    fetcher = ImageFetcher(AddressPolicy(ALLOWED), SMALL)
    assert asyncio.run(fetcher.fetch(origin.url("/img"))) == IMAGE[:800]
    assert asyncio.run(fetcher.fetch(origin.url("/img"))) == IMAGE[:800]
    asyncio.run(fetcher.close())


# --- per-host connection cap -------------------------------------------------------


def fetch_many(urls: list[str], limits: FetchLimits) -> list[bytes | BaseException]:
    """Fetch ``urls`` concurrently on one fetcher; each result or its error, in order."""

    async def run() -> list[bytes | BaseException]:
        fetcher = ImageFetcher(AddressPolicy(ALLOWED), limits)
        try:
            return await asyncio.gather(*(fetcher.fetch(u) for u in urls), return_exceptions=True)
        finally:
            await fetcher.close()

    return asyncio.run(run())


def test_at_most_max_connections_per_host_and_every_fetch_succeeds(
    origin: servers.LoopbackServer,
) -> None:
    origin.add_route("/slow", servers.delayed(servers.respond(IMAGE[:800]), 0.05))
    limits = FetchLimits(max_bytes=1000, timeout_s=10.0, max_connections_per_host=2)
    results = fetch_many([origin.url("/slow")] * 32, limits)
    assert results == [IMAGE[:800]] * 32
    assert origin.peak_connections == 2  # the cap was reached, never passed
    assert origin.connections == 32


def test_every_spelling_and_port_of_a_host_shares_its_cap(
    origin: servers.LoopbackServer,
) -> None:
    origin.add_route("/slow", servers.delayed(servers.respond(IMAGE[:800]), 0.05))
    with servers.LoopbackServer(ORIGIN_HOST, {"/slow": origin.routes["/slow"]}) as second:
        spellings = [
            origin.url("/slow"),
            f"http://2130706434:{origin.port}/slow",  # 127.0.0.2 as one number
            f"http://0x7f000002:{origin.port}/slow",
            second.url("/slow"),  # the same host on another port
        ]
        limits = FetchLimits(max_bytes=1000, timeout_s=10.0, max_connections_per_host=1)
        results = fetch_many(spellings * 4, limits)
        assert results == [IMAGE[:800]] * 16
        assert origin.peak_connections + second.peak_connections <= 2
        assert max(origin.peak_connections, second.peak_connections) == 1


def test_a_fetch_waits_for_its_turn_within_its_deadline(origin: servers.LoopbackServer) -> None:
    origin.add_route("/slow", servers.delayed(servers.respond(IMAGE[:800]), 0.4))
    started = time.monotonic()
    limits = FetchLimits(max_bytes=1000, timeout_s=5.0, max_connections_per_host=1)
    assert fetch_many([origin.url("/slow")] * 3, limits) == [IMAGE[:800]] * 3
    assert time.monotonic() - started >= 1.2  # one after another, none refused early

    # A turn that never comes within the deadline is a timeout like any other.
    origin.add_route("/hang", servers.delayed(servers.respond(IMAGE[:800]), 30))
    limits = FetchLimits(max_bytes=1000, timeout_s=0.6, max_connections_per_host=1)
    started = time.monotonic()
    hung, waited = fetch_many([origin.url("/hang"), origin.url("/img")], limits)
    assert isinstance(hung, UnreachableURL) and isinstance(waited, UnreachableURL)
    assert 0.5 <= time.monotonic() - started < 1.5


def test_configure_changes_the_cap_live(origin: servers.LoopbackServer) -> None:
    origin.add_route("/slow", servers.delayed(servers.respond(IMAGE[:800]), 0.05))

    async def run() -> None:
        fetcher = ImageFetcher(AddressPolicy(ALLOWED), FetchLimits(max_connections_per_host=1))
        try:
            await asyncio.gather(*(fetcher.fetch(origin.url("/slow")) for _ in range(6)))
            assert origin.peak_connections == 1
            fetcher.configure(AddressPolicy(ALLOWED), FetchLimits(max_connections_per_host=3))
            await asyncio.gather(*(fetcher.fetch(origin.url("/slow")) for _ in range(12)))
            assert origin.peak_connections == 3
        finally:
            await fetcher.close()

    asyncio.run(run())
