"""Download an image from a client-supplied URL within size, time and address limits.

Every failure a client can cause becomes a domain error: ``ForbiddenURL`` (the URL or
a redirect leads to an address the ``AddressPolicy`` refuses), ``ImageTooLarge`` (more
than ``max_bytes``, whatever Content-Length says), ``UnreachableURL`` (anything else:
DNS, connection, non-2xx, timeout, too many redirects, a non-http(s) scheme).
At most ``max_connections_per_host`` downloads from one host run at once per fetcher;
more wait for a turn inside their own deadline.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import AbstractResolver
from yarl import URL

from imagetagger import __version__
from imagetagger.download.hostlimit import HostLimiter
from imagetagger.download.netguard import (
    AddressPolicy,
    GuardedConnector,
    caused_by_forbidden_address,
)
from imagetagger.errors import ForbiddenURL, ImageTooLarge, UnreachableURL
from imagetagger.settings import DownloaderSettings

logger = logging.getLogger(__name__)

USER_AGENT = f"imagetagger/{__version__}"
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
CHUNK_SIZE = 64 * 1024
_SCHEMES = frozenset({"http", "https"})


@dataclass(frozen=True)
class FetchLimits:
    """Per-download limits; ``timeout_s`` covers the whole download, redirects included
    (and any wait for a turn at a host that already has ``max_connections_per_host``)."""

    max_bytes: int = 20 * 2**20
    timeout_s: float = 10.0
    max_redirects: int = 5
    max_connections_per_host: int = 8

    def __post_init__(self) -> None:
        if self.max_bytes <= 0:
            raise ValueError(f"max_bytes must be > 0, got {self.max_bytes}")
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s}")
        if self.max_redirects < 0:
            raise ValueError(f"max_redirects must be >= 0, got {self.max_redirects}")
        if self.max_connections_per_host < 1:
            raise ValueError(
                f"max_connections_per_host must be >= 1, got {self.max_connections_per_host}"
            )


@dataclass(eq=False)
class _Pool:
    """One ClientSession and the fetches using it, so a replaced one closes when idle."""

    session: aiohttp.ClientSession
    loop: asyncio.AbstractEventLoop
    users: int = 0


class ImageFetcher:
    """Downloads image bytes; one aiohttp session per fetcher, reused across requests.

    The session is created lazily inside the running event loop; use a fetcher from one
    event loop at a time. ``configure`` is synchronous so Serve's ``reconfigure`` (and
    ``__init__``) can call it: new fetches use the new settings at once, fetches in
    flight finish on the session they started with, which the last of them closes.
    ``resolver`` replaces aiohttp's DNS resolver (tests, or aiodns).
    """

    def __init__(
        self,
        policy: AddressPolicy,
        limits: FetchLimits | None = None,
        *,
        resolver: AbstractResolver | None = None,
    ) -> None:
        self._policy = policy
        self._limits = limits or FetchLimits()
        self._hosts = HostLimiter(self._limits.max_connections_per_host)
        self._resolver = resolver
        self._pool: _Pool | None = None
        self._retired: list[_Pool] = []
        self._closed = False

    @property
    def policy(self) -> AddressPolicy:
        return self._policy

    @property
    def limits(self) -> FetchLimits:
        return self._limits

    @property
    def closed(self) -> bool:
        """True once ``close`` was called; a closed fetcher refuses to fetch."""
        return self._closed

    def configure(self, policy: AddressPolicy, limits: FetchLimits) -> None:
        """Apply new settings live; pooled connections made under the old policy are dropped."""
        self._policy = policy
        self._limits = limits
        if limits.max_connections_per_host != self._hosts.limit:
            # Fetches in flight keep their slots in the old limiter until they finish.
            self._hosts = HostLimiter(limits.max_connections_per_host)
        pool, self._pool = self._pool, None
        if pool is not None:
            self._retired.append(pool)  # closed on the event loop once idle

    async def close(self) -> None:
        """Close every session; call it when the replica shuts down."""
        self._closed = True
        pools = [*self._retired, *([self._pool] if self._pool else [])]
        self._pool = None
        self._retired.clear()
        for pool in pools:
            await self._close_pool(pool)

    async def fetch(self, url: str) -> bytes:
        """Return the body at ``url``, following at most ``max_redirects`` redirects."""
        limits, hosts = self._limits, self._hosts
        pool = self._acquire()
        try:
            async with asyncio.timeout(limits.timeout_s):
                return await self._follow(pool.session, url, limits, hosts)
        except TimeoutError as exc:
            logger.info("fetch of %s timed out after %.1f s", url, limits.timeout_s)
            raise UnreachableURL() from exc
        finally:
            pool.users -= 1
            await self._close_idle_retired()

    def _acquire(self) -> _Pool:
        if self._closed:
            raise RuntimeError("ImageFetcher is closed")
        loop = asyncio.get_running_loop()
        pool = self._pool
        if pool is not None and (pool.loop is not loop or pool.session.closed):
            # A session belongs to the loop that made it; one from another loop is unusable.
            self._pool = None
            pool.session.detach()
            pool = None
        if pool is None:
            connector = GuardedConnector(self._policy, resolver=self._resolver)
            session = aiohttp.ClientSession(
                connector=connector,
                trust_env=False,  # never route through an environment proxy or read .netrc
                auto_decompress=False,  # count the bytes on the wire: no gzip bombs
                cookie_jar=aiohttp.DummyCookieJar(),  # one client's cookies never reach another
                headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
            )
            self._pool = pool = _Pool(session=session, loop=loop)
        pool.users += 1
        return pool

    async def _close_idle_retired(self) -> None:
        loop = asyncio.get_running_loop()
        idle = [p for p in self._retired if p.users == 0 and p.loop is loop]
        dead = [p for p in self._retired if p.loop is not loop and p.loop.is_closed()]
        self._retired = [p for p in self._retired if p not in idle and p not in dead]
        for pool in dead:
            pool.session.detach()
        for pool in idle:
            await self._close_pool(pool)

    @staticmethod
    async def _close_pool(pool: _Pool) -> None:
        if pool.loop is asyncio.get_running_loop():
            await pool.session.close()
        else:  # its loop is gone: nothing can be awaited there, just let go of it
            pool.session.detach()

    async def _follow(
        self, session: aiohttp.ClientSession, url: str, limits: FetchLimits, hosts: HostLimiter
    ) -> bytes:
        try:
            target = URL(url)
        except (TypeError, ValueError) as exc:
            raise UnreachableURL() from exc
        for _hop in range(limits.max_redirects + 1):
            if target.scheme not in _SCHEMES or not target.raw_host:
                logger.info("refused %s: not an absolute http(s) URL", target)
                raise UnreachableURL()
            async with hosts.slot(target.raw_host):  # each hop takes its own host's turn
                location = await self._get(session, target, limits)
            if isinstance(location, bytes):
                return location
            try:
                target = target.join(URL(location)).with_fragment(None)
            except (TypeError, ValueError) as exc:
                raise UnreachableURL() from exc
        logger.info("fetch of %s: more than %d redirects", url, limits.max_redirects)
        raise UnreachableURL()

    async def _get(
        self, session: aiohttp.ClientSession, target: URL, limits: FetchLimits
    ) -> bytes | str:
        """One hop: the body on 2xx, the Location on a redirect; errors as domain errors."""
        try:
            async with session.get(
                target,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=limits.timeout_s),
            ) as response:
                if response.status in REDIRECT_STATUSES:
                    location = response.headers.get("Location")
                    if not location:
                        logger.info("%s: redirect %d without Location", target, response.status)
                        raise UnreachableURL()
                    return location
                if not 200 <= response.status < 300:
                    logger.info("%s answered %d", target, response.status)
                    raise UnreachableURL()
                return await _read_body(response, limits.max_bytes)
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            if caused_by_forbidden_address(exc):
                raise ForbiddenURL() from exc
            logger.info("fetch of %s failed: %s: %.200s", target, type(exc).__name__, exc)
            raise UnreachableURL() from exc


def fetcher_config(settings: DownloaderSettings) -> tuple[AddressPolicy, FetchLimits]:
    """The policy and limits ``settings`` ask for: what ``ImageFetcher.configure`` takes."""
    return AddressPolicy(settings.allowed_networks), FetchLimits(
        max_bytes=settings.max_image_bytes,
        timeout_s=settings.timeout_s,
        max_connections_per_host=settings.max_connections_per_host,
    )


def fetcher_from_settings(
    settings: DownloaderSettings, *, resolver: AbstractResolver | None = None
) -> ImageFetcher:
    """A fetcher under the Downloader's settings: the service's and the bulk job's one."""
    policy, limits = fetcher_config(settings)
    return ImageFetcher(policy, limits, resolver=resolver)


async def _read_body(response: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    """Read at most ``max_bytes``; one byte more means too large, whatever was declared."""
    if response.content_length is not None and response.content_length > max_bytes:
        raise ImageTooLarge(f"Image is larger than {max_bytes} bytes.")
    body = bytearray()
    async for chunk in response.content.iter_chunked(CHUNK_SIZE):
        body += chunk
        if len(body) > max_bytes:
            raise ImageTooLarge(f"Image is larger than {max_bytes} bytes.")
    return bytes(body)
