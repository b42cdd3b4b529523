"""Who may tag: API keys and per-client rate limits, checked before any body is read.

A pure ASGI middleware rather than a FastAPI dependency: FastAPI reads (and spools) a
request's whole body before it runs any dependency, so a key check there would let
anyone upload 64 MiB first. Only the tagging routes (``GUARDED_PATHS`` of the route
table, :mod:`imagetagger.routes`) are guarded; ``/``, the docs and the Serve proxy's
health routes never are, and the label-API routes check keys in their own wire format.
With keys and limits off (the default) the middleware only passes requests on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from deployments.auth import ApiKeys
from deployments.errors import error_response
from deployments.ratelimit import RateLimiter
from imagetagger.errors import ImageTaggerError, RateLimited
from imagetagger.routes import GUARDED_PATHS


@dataclass
class Access:
    """What one ingress replica enforces now; the replica replaces the fields live."""

    keys: ApiKeys | None = None
    limiter: RateLimiter | None = None

    @property
    def active(self) -> bool:
        return self.keys is not None or self.limiter is not None

    def check(self, headers: Headers, address: str) -> None:
        """Raise ``Unauthorized`` or ``RateLimited``, or return: the request may go on.

        The rate-limited client is the key when keys are on (many clients may share an
        address behind a NAT or a load balancer), else the client's address.
        """
        client = None
        if self.keys is not None:
            client = self.keys.identify(
                headers.getlist("authorization"), headers.getlist("x-api-key")
            )
        self.limit(client, address)

    def limit(self, client: str | None, address: str) -> None:
        """Raise ``RateLimited`` when ``client`` (a key's id; None with keys off: the
        address) is past its rate limit; the label-API routes call this too."""
        if self.limiter is not None:
            wait_s = self.limiter.acquire(client or f"addr:{address}")
            if wait_s > 0:
                raise RateLimited(retry_after_s=wait_s)


class _RefusedRoute(NamedTuple):
    """Stands in for the route in the scope, so the request log and metrics name it."""

    path: str


class AccessMiddleware:
    """Answer 401 / 429 in the contract's JSON shape for a guarded route, or pass on.

    ``access`` returns the replica's current :class:`Access` (it changes on reconfigure).
    """

    def __init__(self, app: ASGIApp, access: Callable[[], Access]) -> None:
        self.app = app
        self._access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            access = self._access()
            path = route_path(scope)
            if access.active and path in GUARDED_PATHS:
                client = scope.get("client")
                try:
                    access.check(Headers(scope=scope), client[0] if client else "-")
                except ImageTaggerError as error:
                    scope["route"] = _RefusedRoute(path)
                    await error_response(error)(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def route_path(scope: Scope) -> str:
    """The path inside the application: without the ``root_path`` (Serve's route prefix)."""
    path: str = scope.get("path", "")
    root = scope.get("root_path", "").rstrip("/")
    if root and (path == root or path.startswith(root + "/")):
        path = path[len(root) :]
    return path or "/"
