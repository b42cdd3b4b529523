"""OpenTelemetry tracing: one trace per request, exported over OTLP, off by default.

Configured the OpenTelemetry way, by the standard variables, which the SDK and the
OTLP exporter read themselves: ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) turns it on; ``OTEL_EXPORTER_OTLP_HEADERS``,
``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER`` (+ ``_ARG``;
default ``parentbased_always_on``: what the client sampled is sampled) and
``OTEL_PROPAGATORS`` steer it; ``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none``
turn it off. ``OTEL_EXPORTER_OTLP_PROTOCOL`` is ``http/protobuf`` (``grpc`` when
``opentelemetry-exporter-otlp-proto-grpc`` is installed).

With no endpoint nothing is installed: :func:`span` answers one shared no-op object and
:func:`carrier` ``None``, so the request path makes no span objects and computes no
attributes. Every process (each Serve replica, the bulk job) calls :func:`configure`
once. Context crosses Serve handle calls as W3C carriers (``traceparent``/``tracestate``
dicts) passed as plain arguments. No Ray here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, Tracer

logger = logging.getLogger("ray.serve")

#: A W3C trace context as a dict of headers (``traceparent``, ``tracestate``).
Carrier = dict[str, str]
DEFAULT_SERVICE_NAME = "imagetagger"
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")

_tracer: Tracer | None = None
_provider: Any = None
_configured = False


def requested(environ: Mapping[str, str]) -> bool:
    """Whether ``environ`` asks for traces: an OTLP endpoint, and not disabled."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return any(environ.get(name, "").strip() for name in ENDPOINT_VARIABLES)


def configure(component: str) -> bool:
    """Install this process's tracer provider once, when the environment asks for it.

    ``component`` (the deployment's name) becomes the resource attribute
    ``imagetagger.component``. Returns whether tracing is on.
    """
    global _tracer, _provider, _configured
    if _configured:
        return _tracer is not None
    _configured = True
    if not requested(os.environ):
        return False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    attributes = {"imagetagger.component": component}
    named = os.environ.get("OTEL_SERVICE_NAME") or "service.name=" in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    )
    if not named:
        attributes["service.name"] = DEFAULT_SERVICE_NAME
    exporter = _exporter()
    if exporter is None:
        return False
    # The SDK reads OTEL_TRACES_SAMPLER(_ARG) (default parentbased_always_on) and the
    # span limits itself; the exporter reads the endpoint, headers, timeout, compression.
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    _provider = provider
    # Not installed as the global provider: FastAPI's native telemetry would then add
    # its own request and operation spans (with the full query string, the image URL
    # included), and a test could not turn tracing off again in its process.
    _tracer = provider.get_tracer("imagetagger")
    logger.info("tracing: on (%s), exporting over OTLP", component)
    return True


def _exporter() -> Any:
    protocol = os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
    )
    if protocol.strip() == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        except ImportError:
            logger.error(
                "tracing: off; OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs "
                "opentelemetry-exporter-otlp-proto-grpc (http/protobuf needs nothing more)"
            )
            return None
        return OTLPSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def enabled() -> bool:
    return _tracer is not None


def flush() -> None:
    """Export what is buffered now (a bulk job's worker may be ended right after)."""
    if _provider is not None:
        _provider.force_flush()


def shutdown() -> None:
    """Export what is buffered and turn tracing off in this process (tests, exit)."""
    global _tracer, _provider, _configured
    if _provider is not None:
        _provider.shutdown()
    _tracer, _provider, _configured = None, None, False


def carrier() -> Carrier | None:
    """The current context as W3C headers, for a call to another process; None when off."""
    if _tracer is None:
        return None
    headers: Carrier = {}
    propagate.inject(headers)
    return headers


class _Off:
    """What :func:`span` gives when tracing is off: one shared object, nothing recorded."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_OFF = _Off()


def span(
    name: str,
    parent: Carrier | None = None,
    attributes: Mapping[str, Any] | None = None,
    links: Sequence[Carrier | None] = (),
    kind: SpanKind = SpanKind.INTERNAL,
) -> AbstractContextManager[Span | None]:
    """A span (the current one inside), child of ``parent`` when a carrier is given, else
    of the current span; yields ``None`` and costs nothing when tracing is off.

    An exception leaving it sets the span's status (:func:`record_error`).
    """
    if _tracer is None:
        return _OFF
    return _span(_tracer, name, parent, attributes, links, kind)


@contextmanager
def _span(
    tracer: Tracer,
    name: str,
    parent: Carrier | None,
    attributes: Mapping[str, Any] | None,
    links: Sequence[Carrier | None],
    kind: SpanKind,
) -> Iterator[Span]:
    context = propagate.extract(parent) if parent is not None else None
    span_links = [Link(_span_context(c)) for c in links if c is not None]
    with tracer.start_as_current_span(
        name,
        context=context,
        kind=kind,
        attributes=attributes,
        links=span_links,
        record_exception=False,
        set_status_on_exception=False,
    ) as current:
        try:
            yield current
        except BaseException as exc:
            record_error(current, exc)
            raise


def _span_context(headers: Carrier) -> trace.SpanContext:
    return trace.get_current_span(propagate.extract(headers)).get_span_context()


def record_error(current: Span | None, error: BaseException) -> None:
    """Mark ``current`` failed with the contract's error type and HTTP status."""
    if current is None or not current.is_recording():
        return
    error_type = getattr(error, "error_type", type(error).__name__)
    current.set_status(Status(StatusCode.ERROR, error_type))
    current.set_attribute("error.type", error_type)
    status = getattr(error, "status_code", None)
    if isinstance(status, int):
        current.set_attribute("http.response.status_code", status)


def trace_id() -> str | None:
    """The current trace's id (32 hex digits), or None when there is none."""
    if _tracer is None:
        return None
    context = trace.get_current_span().get_span_context()
    return trace.format_trace_id(context.trace_id) if context.is_valid else None


def start_member_spans(
    name: str, parents: Sequence[Carrier | None], attributes: Mapping[str, Any]
) -> list[Span]:
    """One span per member of a grouped call, each a child of its member's context
    (so every request's trace holds the call); ended with :func:`end_member_spans`."""
    if _tracer is None:
        return []
    return [
        _tracer.start_span(
            name,
            context=propagate.extract(parent) if parent is not None else None,
            attributes={**attributes, "imagetagger.group.index": index},
        )
        for index, parent in enumerate(parents)
    ]


def end_member_spans(spans: Sequence[Span], error: BaseException | None = None) -> None:
    for member in spans:
        if error is not None:
            record_error(member, error)
        member.end()
