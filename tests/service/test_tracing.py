"""OpenTelemetry traces from all three deployments, on the real service.

An application of its own (``imagetagger-traced`` at ``/traced``) runs beside the
session's with only the standard ``OTEL_*`` variables in its ``runtime_env``, exporting
to a real OTLP/HTTP receiver on 127.0.0.1 (:mod:`tests.otlp`). Each traced request's
spans must arrive under the client's trace id, from the ImageTagger, Downloader and
ModelDeployment replicas, parented across the Serve handle calls; the session's own app,
with no endpoint set, exports nothing.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from imagetagger.errors import UnreachableURL
from tests.otlp import OtlpReceiver, ReceivedSpan, traceparent
from tests.photos import COFFEE
from tests.service.helpers import Service, beside_the_session_app, tensorflow_app_config

TRACED_APP = "imagetagger-traced"
COMPONENTS = {"ImageTagger", "Downloader", "ModelDeployment"}
ERROR = 2


def traced_app_config(service: Service, endpoint: str) -> dict[str, Any]:
    """The session's app (LiteRT, one small replica each) with tracing turned on."""
    base = tensorflow_app_config([f"{service.images.host}/32"])
    app = {**base, "name": TRACED_APP, "route_prefix": "/traced"}
    app["args"] = {"model": base["args"]["model"]}  # the default runtime (LiteRT)
    for deployment in app["deployments"]:
        if deployment["name"] == "ModelDeployment":
            deployment.pop("user_config", None)
    env = dict(base.get("runtime_env", {}).get("env_vars", {}))
    env.update(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_SERVICE_NAME": "imagetagger-test",
            "OTEL_BSP_SCHEDULE_DELAY": "100",  # export within 0.1 s, for the test's sake
        }
    )
    app["runtime_env"] = {"env_vars": env}
    return app


@pytest.fixture(scope="module")
def traced(service: Service) -> Iterator[tuple[str, OtlpReceiver]]:
    with OtlpReceiver() as receiver:
        app = traced_app_config(service, receiver.endpoint)
        with beside_the_session_app(service, app) as url:
            yield url, receiver


def request_traced(send: Callable[..., requests.Response], **kwargs: Any) -> tuple[str, str, int]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    response = send(headers={"traceparent": traceparent(trace_id, span_id)}, timeout=60, **kwargs)
    assert response.headers["traceresponse"].startswith(f"00-{trace_id}-")
    return trace_id, span_id, response.status_code


def by_name(spans: list[ReceivedSpan]) -> dict[str, ReceivedSpan]:
    return {span.name: span for span in spans}


def complete(*names: str) -> Callable[[list[ReceivedSpan]], bool]:
    return lambda spans: set(names) <= {span.name for span in spans}


def test_a_url_is_traced_through_every_deployment(
    traced: tuple[str, OtlpReceiver], service: Service
) -> None:
    url, receiver = traced
    trace_id, client_span, status = request_traced(
        requests.get, url=url + "/predictions", params={"url": service.image_url("chelsea.jpg")}
    )
    assert status == 200
    names = ("GET /predictions", "download", "Downloader.load", "fetch", "decode", "crop")
    names += ("model", "ModelDeployment.infer")
    spans = by_name(receiver.wait_for(trace_id, complete(*names)))
    assert set(names) <= set(spans)
    request = spans["GET /predictions"]
    assert request.parent_span_id == client_span
    assert request.attributes["http.response.status_code"] == 200
    assert spans["download"].parent_span_id == request.span_id
    assert spans["Downloader.load"].parent_span_id == spans["download"].span_id
    for step in ("fetch", "decode", "crop"):
        assert spans[step].parent_span_id == spans["Downloader.load"].span_id
    assert spans["fetch"].attributes["imagetagger.ssrf_guard"] == "allowed"
    assert spans["fetch"].attributes["imagetagger.fetch.bytes"] > 0
    assert spans["decode"].attributes["image.format"] == "JPEG"
    assert spans["ModelDeployment.infer"].parent_span_id == spans["model"].span_id
    infer = spans["ModelDeployment.infer"].attributes
    assert infer["imagetagger.model.runtime"] == "litert"
    assert infer["imagetagger.group.size"] >= 1 and infer["imagetagger.model.invoke_ms"] > 0
    components = {span.resource["imagetagger.component"] for span in spans.values()}
    assert components == COMPONENTS
    assert {span.resource["service.name"] for span in spans.values()} == {"imagetagger-test"}


def test_an_upload_is_traced(traced: tuple[str, OtlpReceiver], service: Service) -> None:
    url, receiver = traced
    trace_id, _, status = request_traced(
        requests.post, url=url + "/predictions", files={"file": ("c.jpg", COFFEE, "image/jpeg")}
    )
    assert status == 200
    names = ("POST /predictions", "upload", "Downloader.load", "decode", "model")
    spans = by_name(receiver.wait_for(trace_id, complete(*names, "ModelDeployment.infer")))
    assert spans["Downloader.load"].parent_span_id == spans["upload"].span_id
    assert "fetch" not in spans


def test_an_unreachable_url_is_recorded(traced: tuple[str, OtlpReceiver], service: Service) -> None:
    url, receiver = traced
    trace_id, _, status = request_traced(
        requests.get, url=url + "/predictions", params={"url": service.image_url("missing.jpg")}
    )
    assert status == UnreachableURL.status_code
    names = ("GET /predictions", "download", "Downloader.load", "fetch")
    spans = by_name(receiver.wait_for(trace_id, complete(*names)))
    assert spans["GET /predictions"].attributes["http.response.status_code"] == status
    for name in ("download", "Downloader.load", "fetch"):
        assert spans[name].status_code == ERROR
        assert spans[name].attributes["error.type"] == UnreachableURL.error_type
    assert "ModelDeployment.infer" not in spans


def test_the_untraced_app_exports_nothing(
    traced: tuple[str, OtlpReceiver], service: Service
) -> None:
    _, receiver = traced
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    response = service.get(
        "/predictions",
        params={"url": service.image_url("chelsea.jpg")},
        headers={"traceparent": traceparent(trace_id, span_id)},
    )
    assert response.status_code == 200
    assert "traceresponse" not in response.headers
    assert receiver.wait_for(trace_id, bool, timeout_s=2) == []
