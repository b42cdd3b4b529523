"""Who may tag: API keys and per-client rate limits, checked once, before any body is read.

A pure ASGI middleware rather than a FastAPI dependency: FastAPI reads (and spools) a
request's whole body before it runs any dependency, so a key check there would let
anyone upload 64 MiB first. Every guarded route of the route table
(:mod:`imagetagger.routes`) names its protocol, and each protocol's router gives a
:class:`Guard`: where its clients present a key, and how it words a refusal. The check
itself (the key, then the client's rate limit) is the same for all. ``/``, the docs,
``/ui`` and the health routes are never guarded. With keys and limits off (the
default) the middleware only passes requests on.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from imagetagger.api.auth import ApiKeys
from imagetagger.api.ratelimit import RateLimiter
from imagetagger.errors import RateLimited
from imagetagger.routes import ROUTES
from imagetagger.settings import IngressSettings


@dataclass(frozen=True)
class Guard:
    """One protocol's way of presenting a key and of refusing a request.

    ``identify`` returns the client's id for a valid key (keys are on when it is
    called) or raises; ``refuse`` renders what ``identify`` or the rate limit raised
    (``Unauthorized``, ``RateLimited`` or the protocol's own error) in the protocol's shape.
    """

    identify: Callable[[ApiKeys, HTTPConnection], str | None]
    refuse: Callable[[Exception], Response]


def bearer_or_api_key(keys: ApiKeys, request: HTTPConnection) -> str:
    """The contract's key: ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``."""
    return keys.identify(
        request.headers.getlist("authorization"), request.headers.getlist("x-api-key")
    )


@dataclass
class Access:
    """What one ingress replica enforces now; the replica replaces the fields live."""

    keys: ApiKeys | None = None
    limiter: RateLimiter | None = None

    @property
    def active(self) -> bool:
        return self.keys is not None or self.limiter is not None

    def check(self, guard: Guard, request: HTTPConnection) -> None:
        """Raise (the guard's errors, ``RateLimited``), or return: the request may go on.

        The rate-limited client is the key when keys are on (many clients may share an
        address behind a NAT or a load balancer), else the client's address.
        """
        client = guard.identify(self.keys, request) if self.keys is not None else None
        self.limit(client, request.client.host if request.client else "-")

    def limit(self, client: str | None, address: str) -> None:
        """Raise ``RateLimited`` when ``client`` (a key's id; None with keys off: the
        address) is past its rate limit."""
        if self.limiter is not None:
            wait_s = self.limiter.acquire(client or f"addr:{address}")
            if wait_s > 0:
                raise RateLimited(retry_after_s=wait_s)


def limiter_for(settings: IngressSettings, current: RateLimiter | None) -> RateLimiter | None:
    """The limiter ``settings`` ask for: the current one (buckets kept) if unchanged."""
    if settings.rate_limit_per_s == 0:
        return None
    wanted = (settings.rate_limit_per_s, settings.rate_limit_burst)
    if current is not None and (current.rate_per_s, current.burst) == wanted:
        return current
    return RateLimiter(*wanted)


class _RefusedRoute(NamedTuple):
    """Stands in for the route in the scope, so the request log and metrics name it."""

    path: str


class _GuardedRoute(NamedTuple):
    method: str
    pattern: re.Pattern[str]
    path: str
    guard: Guard


def guarded_routes(guards: Mapping[str, Guard]) -> tuple[_GuardedRoute, ...]:
    """The route table's guarded routes, each with its protocol's guard."""
    return tuple(
        _GuardedRoute(route.method, compile_path(route.path)[0], route.path, guards[route.guard])
        for route in ROUTES
        if route.guard in guards  # the protocols this app serves
    )


class AccessMiddleware:
    """Refuse a guarded route's request (401, 429, in its protocol's shape), or pass on.

    ``access`` returns the replica's current :class:`Access` (it changes on reconfigure).
    """

    def __init__(
        self, app: ASGIApp, access: Callable[[], Access], guards: Mapping[str, Guard]
    ) -> None:
        self.app = app
        self._access = access
        self._routes = guarded_routes(guards)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            access = self._access()
            if access.active:
                path = route_path(scope)
                for route in self._routes:
                    if route.method == scope["method"] and route.pattern.match(path):
                        try:
                            access.check(route.guard, HTTPConnection(scope))
                        except Exception as error:
                            scope["route"] = _RefusedRoute(route.path)
                            await route.guard.refuse(error)(scope, receive, send)
                            return
                        break
        await self.app(scope, receive, send)


def route_path(scope: Scope) -> str:
    """The path inside the application: without the ``root_path`` (Serve's route prefix)."""
    path: str = scope.get("path", "")
    root = scope.get("root_path", "").rstrip("/")
    if root and (path == root or path.startswith(root + "/")):
        path = path[len(root) :]
    return path or "/"
