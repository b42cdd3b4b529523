"""The ingress's request span: the outermost ASGI layer when tracing is on.

It continues the client's W3C ``traceparent``/``tracestate`` (a request without one
starts a trace), so everything the request log, the core and the Downloader and model
do for the request is in that trace; the request log line inside reads its trace id.
The response carries ``traceresponse`` (W3C Trace Context Level 2: version, trace id,
this span's id, flags), so a client that sent no ``traceparent`` can still find its
trace. When tracing is off the layer passes each request straight on.
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imagetagger import tracing


class TracingMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not tracing.enabled():
            await self.app(scope, receive, send)
            return
        headers = {
            key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]
        }
        method = scope["method"]
        with tracing.span(method, headers, kind=SpanKind.SERVER) as span:
            status = 500
            recording = span is not None and span.is_recording()
            context = trace.get_current_span().get_span_context()
            traceresponse = (
                f"00-{trace.format_trace_id(context.trace_id)}-"
                f"{trace.format_span_id(context.span_id)}-{int(context.trace_flags):02x}"
            ).encode()

            async def send_traced(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                    message["headers"] = [
                        *message.get("headers", []),
                        (b"traceresponse", traceresponse),
                    ]
                await send(message)

            try:
                await self.app(scope, receive, send_traced)
            finally:
                if recording:
                    route = getattr(scope.get("route"), "path", None)
                    span.update_name(f"{method} {route}" if route else method)
                    span.set_attributes(
                        {
                            "http.request.method": method,
                            "http.route": route or "unmatched",
                            "url.path": scope["path"],
                            "http.response.status_code": status,
                            "imagetagger.request_id": headers.get("x-request-id", "-"),
                        }
                    )
                    if status >= 500:
                        span.set_status(Status(StatusCode.ERROR, str(status)))
                        span.set_attribute("error.type", str(status))
