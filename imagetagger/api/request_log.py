"""The ingress's outermost ASGI layer: one log line, one metric and never a bare 500.

A pure ASGI middleware (not Starlette's ``BaseHTTPMiddleware``) so it adds no task or
copy per request.
"""

import logging
import time
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imagetagger import tracing
from imagetagger.api.errors import error_response
from imagetagger.api.metrics import HttpMetrics, no_metrics

logger = logging.getLogger("ray.serve")


class RequestMiddleware:
    """Log and count every HTTP request; answer a bug with a JSON 500, no stack trace.

    The Serve proxy accepts a client's ``X-Request-ID`` (or makes one), passes it in the
    request headers and returns it in the response; the log line carries it, so one
    request can be followed through the proxy and replica logs. A FastAPI handler for
    ``Exception`` would not do for bugs: Starlette re-raises after it runs, and the
    Serve proxy then replaces the answer with a plain-text 500.
    """

    def __init__(self, app: ASGIApp, metrics: Callable[[], HttpMetrics] = no_metrics) -> None:
        self.app = app
        self._metrics = metrics  # the replica's metric objects, made on first use

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status: int | None = None

        async def send_tracking(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_tracking)
        except Exception as exc:
            logger.exception("Unexpected error on %s %s", scope["method"], scope["path"])
            if status is None:
                status = 500
                await error_response(exc)(scope, receive, send)
        finally:
            self._record(scope, status or 500, time.perf_counter() - started)

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        route = getattr(scope.get("route"), "path", "unmatched")  # bounded label values
        trace_id = tracing.trace_id()  # None (and not logged) when tracing is off
        logger.info(
            "request_id=%s method=%s route=%s status=%d duration_ms=%.1f url_host=%s%s",
            Headers(scope=scope).get("x-request-id", "-"),
            scope["method"],
            route,
            status,
            seconds * 1000,
            _url_host(scope.get("query_string", b"")),
            f" trace_id={trace_id}" if trace_id else "",
        )
        self._metrics().requests.inc(tags={"route": route, "status": str(status)})


def _url_host(query_string: bytes) -> str:
    """Host of the ``url`` query parameter (never the full URL: it may hold secrets)."""
    values = parse_qs(query_string.decode("latin-1")).get("url")
    if not values:
        return "-"
    try:
        return urlsplit(values[0]).hostname or "-"
    except ValueError:
        return "-"
