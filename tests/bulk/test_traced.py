"""The bulk job's spans, its steps called in-process (no Ray), exported by the real
OTLP/HTTP exporter to a real receiver (tests/otlp.py), configured by OTEL_* only."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import numpy as np
import pytest

from imagetagger import tracing
from imagetagger.bulk.stages import decode_batch, fetch_batch, stage_table
from imagetagger.bulk.traced import TracedStep, TracedTagger, otel_environment
from imagetagger.settings import DownloaderSettings
from tests import images, servers
from tests.bulk.test_stages import SPEC, _FakeClassifier
from tests.otlp import OtlpReceiver, traceparent


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        monkeypatch.delenv("OTEL_TRACES_SAMPLER", raising=False)
        tracing.shutdown()
        try:
            yield receiver
        finally:
            tracing.shutdown()


def test_each_step_is_a_span_per_batch_in_the_jobs_trace(receiver: OtlpReceiver) -> None:
    trace_id, job_span = secrets.token_hex(16), secrets.token_hex(8)
    job = {"traceparent": traceparent(trace_id, job_span)}
    photo = images.jpeg_bytes(images.photo())
    routes = {"/cat.jpg": servers.respond(photo, "image/jpeg")}
    with servers.LoopbackServer("127.0.0.2", routes) as origin:
        table = stage_table(
            ["url", "url"],
            [origin.url("/cat.jpg"), origin.url("/missing.jpg")],
            [b""] * 2,
            [("", "")] * 2,
        )
        settings = DownloaderSettings(allowed_networks=["127.0.0.2/32"]).model_dump()
        fetched = TracedStep(fetch_batch, "fetch", job)(table, settings=settings)
    size = SPEC.input_size
    decoded = TracedStep(decode_batch, "decode", job)(
        fetched, size=size, crop_padding=SPEC.crop_padding, max_pixels=10**8
    )
    config = {"model": "efficientnet_lite0", "runtime": "litert", "top": 1}
    result = TracedTagger(config, job, classifier=_FakeClassifier())(decoded)
    assert result.column("error").null_count == 1  # the 404 stays a row
    spans = receiver.wait_for(trace_id, lambda found: len(found) >= 3)
    assert {s.name: s.resource["imagetagger.component"] for s in spans} == {
        "tag.fetch": "bulk",
        "tag.decode": "bulk",
        "tag.classify": "bulk",
    }
    assert {s.parent_span_id for s in spans} == {job_span}
    rows = {
        s.name: (s.attributes["imagetagger.batch.rows"], s.attributes["imagetagger.batch.errors"])
        for s in spans
    }
    assert rows == {"tag.fetch": (2, 1), "tag.decode": (2, 1), "tag.classify": (2, 1)}
    assert np.frombuffer(decoded.column("data")[0].as_py(), np.uint8).size == size * size * 3


def test_off_the_steps_export_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    with OtlpReceiver() as receiver:
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
        tracing.shutdown()
        table = stage_table(["url"], ["http://127.0.0.2:9/x.jpg"], [b""], [("", "")])
        TracedStep(decode_batch, "decode", None)(table, size=8, crop_padding=0, max_pixels=10)
        assert not tracing.enabled() and receiver.requests == 0
        tracing.shutdown()


def test_the_otel_variables_go_to_the_jobs_runtime_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "tagger")
    assert otel_environment()["OTEL_SERVICE_NAME"] == "tagger"
