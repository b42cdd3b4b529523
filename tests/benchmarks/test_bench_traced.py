"""make bench's traced run: the receiver's counts and the report's lines (no Ray)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from benchmarks.otlp_receiver import make_server
from benchmarks.traced import _levels, received, traced_lines, traced_targets


@pytest.fixture
def endpoint() -> Iterator[str]:
    server, _ = make_server("127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_receiver_counts_what_the_otlp_exporter_sends(endpoint: str) -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    provider = TracerProvider(resource=Resource.create({"service.name": "bench"}))
    provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint + "/v1/traces"))
    )
    tracer = provider.get_tracer("test")
    for _ in range(3):
        with tracer.start_as_current_span("request"), tracer.start_as_current_span("child"):
            pass
    provider.shutdown()
    assert received(endpoint) == {"exports": 6, "spans": 6, "traces": 3}


def _measured(rps: float, p50: float, c: int = 32) -> dict:
    return {"levels": [{"concurrency": c, "req_per_s": rps, "p50_ms": p50}]}


def test_report_gives_each_run_beside_the_untraced_one() -> None:
    report = {
        "service": _measured(100.0, 300.0),
        "service_traced": {
            "workload": "unique",
            "runs": {
                "sampling_1": {
                    **_measured(92.0, 330.0),
                    "label": "sampling 1.0",
                    "spans_per_request": 10.0,
                },
                "default_ratio": {
                    **_measured(99.0, 303.0),
                    "label": "default ratio",
                    "spans_per_request": 0.1,
                },
            },
        },
    }
    lines = traced_lines(report)
    assert "| 32 | untraced | 100.00 | 300.0 | 1.00 | 1.00 | 0 |" in lines
    assert "| 32 | sampling 1.0 | 92.00 | 330.0 | 0.92 | 1.10 | 10.00 |" in lines
    assert "| 32 | default ratio | 99.00 | 303.0 | 0.99 | 1.01 | 0.10 |" in lines
    [target] = traced_targets(report)
    assert (target["value"], target["verdict"]) == (0.92, "PASS")
    assert traced_lines({"service": None}) == [] and traced_targets({}) == []


def test_levels_are_c1_and_c32_of_those_measured() -> None:
    assert _levels((1, 8, 32)) == (1, 32)
    assert _levels((4,)) == (4,)
