"""OpenTelemetry tracing of the app and the request core, in-process (no Ray).

Spans are exported by the real OTLP/HTTP exporter to a real receiver on 127.0.0.1
(:mod:`tests.otlp`), configured only by the standard ``OTEL_*`` variables. The
in-process backend stands in for the Downloader and the model (``local.*`` spans);
tests/service/test_tracing.py checks the real deployments.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator

import pytest

from imagetagger import tracing
from imagetagger.errors import UnreachableURL
from tests.inprocess import serve_in_process
from tests.otlp import OtlpReceiver, ReceivedSpan, traceparent
from tests.photos import CHELSEA
from tests.servers import LoopbackServer, respond

SERVER, INTERNAL = 2, 1  # OTLP span kinds
ERROR = 2  # OTLP status code


@pytest.fixture(scope="module")
def images() -> Iterator[LoopbackServer]:
    with LoopbackServer("127.0.0.1", {"/chelsea.jpg": respond(CHELSEA, "image/jpeg")}) as server:
        yield server


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[OtlpReceiver]:
    """Tracing on, by the standard variables only, exporting to a fresh receiver."""
    with OtlpReceiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
        monkeypatch.delenv("OTEL_TRACES_SAMPLER", raising=False)
        tracing.shutdown()
        assert tracing.configure("test")
        try:
            yield receiver
        finally:
            tracing.shutdown()


def new_ids() -> tuple[str, str]:
    return secrets.token_hex(16), secrets.token_hex(8)


def one(spans: list[ReceivedSpan], name: str) -> ReceivedSpan:
    found = [span for span in spans if span.name == name]
    assert len(found) == 1, (name, [span.name for span in spans])
    return found[0]


def test_a_request_continues_the_clients_trace(
    receiver: OtlpReceiver, images: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    trace_id, client_span = new_ids()
    with serve_in_process() as client, caplog.at_level(logging.INFO, logger="ray.serve"):
        response = client.get(
            "/predictions",
            params={"url": images.url("/chelsea.jpg")},
            headers={"traceparent": traceparent(trace_id, client_span), "x-request-id": "r-7"},
        )
    assert response.status_code == 200
    tracing.shutdown()  # exports what is buffered
    spans = receiver.of_trace(trace_id)
    assert len(spans) == len(receiver.spans) >= 6

    request = one(spans, "GET /predictions")
    assert (request.parent_span_id, request.kind) == (client_span, SERVER)
    assert request.attributes["http.route"] == "/predictions"
    assert request.attributes["http.request.method"] == "GET"
    assert request.attributes["http.response.status_code"] == 200
    assert request.attributes["imagetagger.request_id"] == "r-7"
    assert request.resource["service.name"] == "imagetagger"
    assert request.resource["imagetagger.component"] == "test"
    # W3C Trace Context Level 2: the server span's own id, so a client can find it
    assert response.headers["traceresponse"] == f"00-{trace_id}-{request.span_id}-01"

    download = one(spans, "download")
    assert download.parent_span_id == request.span_id
    assert one(spans, "local.load").parent_span_id == download.span_id
    cache = one(spans, "response_cache")
    assert cache.parent_span_id == request.span_id
    assert cache.attributes["imagetagger.cache.hit"] is False
    model = one(spans, "model")
    assert model.parent_span_id == request.span_id
    assert one(spans, "local.infer").parent_span_id == model.span_id
    assert all(span.status_code != ERROR for span in spans)

    lines = [r.getMessage() for r in caplog.records if "request_id=r-7" in r.getMessage()]
    assert len(lines) == 1 and lines[0].endswith(f" trace_id={trace_id}")


def test_an_error_is_recorded_on_its_trace(receiver: OtlpReceiver, images: LoopbackServer) -> None:
    trace_id, client_span = new_ids()
    with serve_in_process() as client:
        response = client.get(
            "/predictions",
            params={"url": images.url("/missing.jpg")},
            headers={"traceparent": traceparent(trace_id, client_span)},
        )
    assert response.status_code == UnreachableURL.status_code
    tracing.shutdown()
    spans = receiver.of_trace(trace_id)
    request = one(spans, "GET /predictions")
    assert request.attributes["http.response.status_code"] == UnreachableURL.status_code
    for name in ("download", "local.load"):
        failed = one(spans, name)
        assert failed.status_code == ERROR
        assert failed.attributes["error.type"] == UnreachableURL.error_type
        assert failed.attributes["http.response.status_code"] == UnreachableURL.status_code
    assert not [span for span in spans if span.name in ("model", "response_cache")]


def test_a_request_without_traceparent_starts_a_trace(receiver: OtlpReceiver) -> None:
    with serve_in_process() as client:
        response = client.post("/predictions", files={"file": ("c.jpg", CHELSEA, "image/jpeg")})
    assert response.status_code == 200
    _, trace_id, span_id, flags = response.headers["traceresponse"].split("-")
    tracing.shutdown()
    spans = receiver.of_trace(trace_id)
    request = one(spans, "POST /predictions")
    assert (request.span_id, request.parent_span_id) == (span_id, "")
    assert int(flags, 16) & 1  # sampled (0x02: the SDK made a random trace id)
    assert one(spans, "upload").parent_span_id == request.span_id


def test_grouped_calls_carry_each_images_context(
    receiver: OtlpReceiver, images: LoopbackServer
) -> None:
    trace_id, client_span = new_ids()
    urls = [images.url("/chelsea.jpg"), images.url("/chelsea.jpg") + "?2"]
    with serve_in_process() as client:
        response = client.post(
            "/predictions/batch",
            json={"urls": urls},
            headers={"traceparent": traceparent(trace_id, client_span)},
        )
    assert response.status_code == 200
    tracing.shutdown()
    spans = receiver.of_trace(trace_id)
    downloads = {span.span_id for span in spans if span.name == "download"}
    loads = [span for span in spans if span.name == "local.load"]
    assert len(downloads) == 2 and {span.parent_span_id for span in loads} == downloads
    models = {span.span_id for span in spans if span.name == "model"}
    assert len(models) in (1, 2)  # the second image may hit the cache
    # The two crops reach the model in one grouped call or, when the second download
    # ends after the first call has left, in two: every call carries its members' spans.
    infers = [span for span in spans if span.name == "local.infer"]
    assert 1 <= len(infers) <= len(models)
    carried: set[str] = set()
    for infer in infers:
        linked = {span_id for _, span_id in infer.links}
        assert linked <= models | {infer.parent_span_id}
        carried |= (linked | {infer.parent_span_id}) & models
    assert carried == models


def test_unsampled_requests_export_nothing(receiver: OtlpReceiver) -> None:
    trace_id, client_span = new_ids()
    with serve_in_process() as client:
        response = client.post(
            "/predictions",
            files={"file": ("c.jpg", CHELSEA, "image/jpeg")},
            headers={"traceparent": traceparent(trace_id, client_span, sampled=False)},
        )
    assert response.status_code == 200
    assert response.headers["traceresponse"].endswith("-00")
    tracing.shutdown()
    assert receiver.spans == []


def test_off_without_an_endpoint(
    monkeypatch: pytest.MonkeyPatch, images: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    with OtlpReceiver() as receiver:
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
        tracing.shutdown()
        assert not tracing.configure("test")
        trace_id, client_span = new_ids()
        with serve_in_process() as client, caplog.at_level(logging.INFO, logger="ray.serve"):
            response = client.get(
                "/predictions",
                params={"url": images.url("/chelsea.jpg")},
                headers={"traceparent": traceparent(trace_id, client_span)},
            )
        assert response.status_code == 200
        assert "traceresponse" not in response.headers
        assert tracing.carrier() is None and tracing.trace_id() is None
        tracing.shutdown()
    assert receiver.requests == 0
    assert not [r for r in caplog.records if "trace_id=" in r.getMessage()]


@pytest.mark.parametrize(
    ("environ", "on"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_TRACES_EXPORTER": "none"}, False),
    ],
)
def test_what_turns_it_on(environ: dict[str, str], on: bool) -> None:
    assert tracing.requested(environ) is on
