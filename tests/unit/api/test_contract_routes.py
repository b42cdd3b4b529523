"""The contract's routes through the request core, in-process (no Ray, ``make test-fast``).

The app is the service's own (:func:`imagetagger.api.app.build_api`), its core wired to
the library: the real fetcher (SSRF guard, limits) against a loopback image server, the
real decoder, and a fake model that calls every image the same cat. The same routes on
the real service and the real model: tests/service/test_api.py.
"""

from __future__ import annotations

import asyncio
import base64
import threading
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from imagetagger.api.access import Access
from imagetagger.api.auth import MISSING_KEY, ApiKeys, hash_key
from imagetagger.api.ratelimit import RateLimiter
from imagetagger.hierarchy import general_labels
from imagetagger.settings import IngressSettings
from tests.inprocess import CAT, fake_model, serve_in_process
from tests.photos import CHELSEA, COFFEE
from tests.servers import LoopbackServer, respond, unused_port

KEY = "contract-test-key-1a2b"
NOT_AN_IMAGE = b"<html>not an image</html>"
OVERLOADED = {"error": {"type": "Overloaded", "detail": "The service is overloaded; retry later."}}


@pytest.fixture(scope="module")
def images() -> Iterator[LoopbackServer]:
    routes = {
        "/chelsea.jpg": respond(CHELSEA, "image/jpeg"),
        "/coffee.jpg": respond(COFFEE, "image/jpeg"),
        "/page.html": respond(NOT_AN_IMAGE, "image/jpeg"),  # lies about its type
    }
    with LoopbackServer("127.0.0.1", routes) as server:
        yield server


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with serve_in_process() as client:
        yield client


def expected(top: int | None = None, minconf: float | None = None) -> list[dict[str, object]]:
    order = np.argsort(-CAT, kind="stable")
    from imagetagger.labels import LABELS

    rows = [{"label": LABELS[i], "confidence": float(CAT[i])} for i in order]
    if minconf is not None:
        rows = [row for row in rows if row["confidence"] >= minconf]
    if top is None and minconf is None:
        top = 1
    return rows if top is None else rows[:top]


def test_info_names_the_served_model(client: TestClient) -> None:
    answer = client.get("/").json()
    assert answer["model"] == "efficientnet_lite2"
    assert set(answer) == {"description", "version", "revision", "author", "github_url", "model"}


@pytest.mark.parametrize(
    ("params", "top", "minconf"),
    [
        ({}, None, None),
        ({"top": 3}, 3, None),
        ({"minconf": 0.1}, None, 0.1),
        ({"top": 1, "minconf": 0.1}, 1, 0.1),
    ],
)
def test_get_predictions_applies_top_and_minconf(
    client: TestClient, images: LoopbackServer, params: dict, top: int | None, minconf: float | None
) -> None:
    url = images.url("/chelsea.jpg")
    response = client.get("/predictions", params={"url": url, **params})
    assert response.status_code == 200
    assert response.json() == {"url": url, "predictions": expected(top, minconf)}


def test_upload_and_batch_answer_in_the_contracts_shapes(
    client: TestClient, images: LoopbackServer
) -> None:
    upload = client.post("/predictions", files={"file": ("c.jpg", CHELSEA, "image/jpeg")})
    assert upload.json() == {"filename": "c.jpg", "predictions": expected()}
    urls = [images.url("/coffee.jpg"), images.url("/page.html"), "http://127.0.0.2:9/x.jpg"]
    batch = client.post("/predictions/batch", json={"urls": urls, "top": 2})
    assert batch.status_code == 200
    assert batch.json() == {
        "results": [
            {"url": urls[0], "predictions": expected(2)},
            {
                "url": urls[1],
                "error": {
                    "type": "InvalidImage",
                    "detail": "Url is not pointing to a valid image format.",
                },
            },
            {
                "url": urls[2],
                "error": {
                    "type": "ForbiddenURL",
                    "detail": "Url resolves to an address that is not allowed.",
                },
            },
        ]
    }


@pytest.mark.parametrize(
    ("path", "status", "error_type"),
    [
        ("/page.html", 400, "InvalidImage"),
        ("/missing.jpg", 404, "UnreachableURL"),
    ],
)
def test_an_image_error_is_the_contracts_json(
    client: TestClient, images: LoopbackServer, path: str, status: int, error_type: str
) -> None:
    response = client.get("/predictions", params={"url": images.url(path)})
    assert response.status_code == status
    assert response.json()["error"]["type"] == error_type


def test_forbidden_and_unreachable_addresses(client: TestClient) -> None:
    forbidden = client.get("/predictions", params={"url": "http://127.0.0.2:8/x.jpg"})
    assert (forbidden.status_code, forbidden.json()["error"]["type"]) == (403, "ForbiddenURL")
    closed = client.get("/predictions", params={"url": f"http://127.0.0.1:{unused_port()}/x.jpg"})
    assert closed.json() == {
        "error": {"type": "UnreachableURL", "detail": "Url cannot be reached."}
    }


def test_invalid_parameters_are_one_422_with_every_issue(client: TestClient) -> None:
    response = client.get("/predictions", params={"url": "ftp://x/y.jpg", "top": 0})
    assert response.status_code == 422
    detail = response.json()["error"]["detail"]
    assert [issue["loc"] for issue in detail] == [["query", "url"], ["query", "top"]]
    assert all(set(issue) == {"loc", "message", "type"} for issue in detail)


def test_general_labels_come_from_the_library(client: TestClient) -> None:
    upload = client.post(
        "/predictions", params={"labels": "general"}, files={"file": ("c.jpg", CHELSEA)}
    )
    assert upload.json()["general"] == [label.to_dict() for label in general_labels(CAT)]


def test_an_upload_over_the_live_cap_is_413_before_the_model() -> None:
    with serve_in_process(settings=IngressSettings(max_upload_bytes=1000)) as client:
        response = client.post("/predictions", files={"file": ("c.jpg", CHELSEA)})
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "ImageTooLarge"


def test_a_request_past_max_in_flight_is_503_with_retry_after(images: LoopbackServer) -> None:
    entered, release = threading.Event(), threading.Event()

    def slow_model(batch: np.ndarray) -> np.ndarray:
        entered.set()
        release.wait(10)
        return fake_model(batch)

    with serve_in_process(slow_model, settings=IngressSettings(max_in_flight=1)) as client:
        url = images.url("/chelsea.jpg")
        first = client.portal.start_task_soon(
            lambda: asyncio.to_thread(client.get, "/predictions", params={"url": url})
        )
        assert entered.wait(10)  # the first request holds the only place
        refused = client.post("/predictions/batch", json={"urls": [url]})
        release.set()
        assert first.result(10).status_code == 200
    assert refused.status_code == 503
    assert refused.json() == OVERLOADED
    assert refused.headers["retry-after"]


def test_past_the_deadline_the_answer_is_503(images: LoopbackServer) -> None:
    def stuck_model(batch: np.ndarray) -> np.ndarray:
        threading.Event().wait(2)
        return fake_model(batch)

    settings = IngressSettings(request_timeout_s=0.3)
    with serve_in_process(stuck_model, settings=settings) as client:
        response = client.get("/predictions", params={"url": images.url("/chelsea.jpg")})
    assert response.status_code == 503
    assert response.json()["error"]["detail"] == "The request took too long; retry later."


def test_the_cache_answers_repeated_bytes_without_the_model() -> None:
    calls: list[int] = []

    def counting_model(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        return fake_model(batch)

    with serve_in_process(counting_model) as client:
        answers = [
            client.post("/predictions", files={"file": ("c.jpg", CHELSEA)}).json() for _ in range(3)
        ]
    assert calls == [1]
    assert answers[0] == answers[1] == answers[2]


def test_keys_and_rate_limits_guard_every_protocol_in_its_shape() -> None:
    access = Access(keys=ApiKeys([hash_key(KEY)]), limiter=RateLimiter(0.001, 1))
    content = base64.b64encode(CHELSEA).decode()
    vision = {
        "requests": [{"image": {"content": content}, "features": [{"type": "LABEL_DETECTION"}]}]
    }
    with serve_in_process(access=access) as client:
        missing = client.post("/predictions", files={"file": ("c.jpg", CHELSEA)})
        google = client.post("/v1/images:annotate", json=vision)
        served = client.post("/v1/images:annotate", json=vision, headers={"x-goog-api-key": KEY})
        limited = client.post("/v1/images:annotate", json=vision, headers={"x-goog-api-key": KEY})
    assert (missing.status_code, missing.json()) == (
        401,
        {"error": {"type": "Unauthorized", "detail": MISSING_KEY}},
    )
    assert google.status_code == 403 and google.json()["error"]["status"] == "PERMISSION_DENIED"
    assert served.status_code == 200 and served.json()["responses"][0]["labelAnnotations"]
    assert limited.status_code == 429
    assert limited.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert limited.headers["retry-after"]


def test_the_real_model_through_the_core_tags_the_cat(lite2_litert_classifier) -> None:
    """The same app with the real LiteRT model in-process: chelsea.jpg is a cat."""
    from tests.photos import CATS

    with serve_in_process(lite2_litert_classifier.predict_proba, identity="lite2") as client:
        answer = client.post(
            "/predictions", params={"top": 3}, files={"file": ("c.jpg", CHELSEA)}
        ).json()
    assert answer["predictions"][0]["label"] in CATS
    assert answer["predictions"][0]["confidence"] > 0.5
