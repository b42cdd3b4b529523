"""The Open Inference Protocol's routes through the request core in-process (the real
decoder, a fake model; no Ray): health, metadata, infer in JSON and binary, the
classification extension, and every error in the protocol's shape."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from imagetagger import __version__
from imagetagger.api.access import Access
from imagetagger.api.app import local_api
from imagetagger.api.auth import ApiKeys, hash_key
from imagetagger.api.core import RequestCore
from imagetagger.api.local_backend import LocalBackend
from imagetagger.api.ratelimit import RateLimiter
from imagetagger.api.routers import open_inference as router_module
from imagetagger.errors import MISSING_KEY
from imagetagger.protocols import open_inference as oip
from imagetagger.settings import IngressSettings
from tests.protocol_apps import (
    B64_CAT,
    B64_CUP,
    CAT,
    CHELSEA,
    COFFEE,
    CUP,
    MODEL,
    binary_request,
    fake_model,
    json_request,
    make_app,
)

INFER = f"/v2/models/{MODEL}/infer"


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(make_app())


def test_health_and_metadata(client: TestClient) -> None:
    live, ready = client.get("/v2/health/live"), client.get("/v2/health/ready")
    assert (live.status_code, live.content, ready.status_code) == (200, b"", 200)
    assert client.get(f"/v2/models/{MODEL}/ready").status_code == 200
    assert client.get("/v2").json() == {
        "name": "imagetagger",
        "version": __version__,
        "extensions": ["binary_tensor_data", "classification"],
    }
    assert client.get(f"/v2/models/{MODEL}").json() == {
        "name": MODEL,
        "versions": ["1"],
        "platform": "imagetagger",
        "inputs": [{"name": "IMAGE", "datatype": "BYTES", "shape": [-1]}],
        "outputs": [{"name": "PROBABILITIES", "datatype": "FP32", "shape": [-1, 1000]}],
    }
    for path in ("/v2/models/resnet50", "/v2/models/resnet50/ready"):
        answer = client.get(path)
        assert (answer.status_code, answer.json()) == (
            404,
            {"error": "Request for unknown model: 'resnet50' is not found"},
        )


def test_not_ready_until_the_model_answers() -> None:
    class Starting(LocalBackend):
        async def model_identity(self) -> str:
            raise RuntimeError("no replica yet")

    core = RequestCore(Starting(MODEL, fake_model, "fake"), MODEL)
    client = TestClient(local_api(core))
    assert client.get("/v2/health/ready").status_code == 503
    assert client.get(f"/v2/models/{MODEL}/ready").status_code == 503
    assert client.get("/v2/health/live").status_code == 200


def test_infer_json_in_json_out(client: TestClient) -> None:
    answer = client.post(INFER, json=json_request(B64_CAT, id="abc"))
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert (body["id"], body["model_name"], body["model_version"]) == ("abc", MODEL, "1")
    (output,) = body["outputs"]
    assert np.array_equal(np.array(output["data"], np.float32), CAT)


def test_infer_binary_in_binary_out_batch_of_two(client: TestClient) -> None:
    body, headers = binary_request(
        CHELSEA, COFFEE, outputs=[{"name": "PROBABILITIES", "parameters": {"binary_data": True}}]
    )
    answer = client.post(INFER, content=body, headers=headers)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/octet-stream"
    length = int(answer.headers[oip.HEADER_LENGTH])
    (output,) = json.loads(answer.content[:length])["outputs"]
    assert output["shape"] == [2, 1000]
    data = np.frombuffer(answer.content[length:], "<f4").reshape(2, 1000)
    assert np.array_equal(data, np.stack([CAT, CUP]))


def test_infer_classification_json(client: TestClient) -> None:
    request = json_request(
        B64_CUP, outputs=[{"name": "PROBABILITIES", "parameters": {"classification": 2}}]
    )
    (output,) = client.post(INFER, json=request).json()["outputs"]
    assert output == {
        "name": "PROBABILITIES",
        "datatype": "BYTES",
        "shape": [1, 2],
        "data": ["0.500000:967:espresso", "0.250000:968:cup"],
    }


def test_gzip_request(client: TestClient) -> None:
    body = gzip.compress(json.dumps(json_request(B64_CAT)).encode())
    answer = client.post(INFER, content=body, headers={"Content-Encoding": "gzip"})
    assert answer.status_code == 200


def expect(answer, status: int, error: str, **headers: str) -> None:
    assert (answer.status_code, answer.json()) == (status, {"error": error})
    for name, value in headers.items():
        assert answer.headers[name.replace("_", "-")] == value


def test_infer_errors_in_the_protocols_shape(client: TestClient) -> None:
    invalid = "Url is not pointing to a valid image format."
    expect(client.post(INFER, json=json_request("aGVsbG8=")), 400, f"image 0: {invalid}")
    expect(client.post(INFER, json=json_request(B64_CAT, "aGVsbG8=")), 400, f"image 1: {invalid}")
    expect(
        client.post(INFER, json=json_request("@@")), 400, "Input 'IMAGE' element 0 is not base64"
    )
    expect(
        client.post("/v2/models/resnet50/infer", json=json_request(B64_CAT)),
        404,
        "Request for unknown model: 'resnet50' is not found",
    )
    answer = client.post(INFER, content=b"\x00" * 10)
    assert answer.status_code == 400 and answer.json()["error"].startswith("Unable to parse")


def test_infer_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    small = TestClient(make_app(IngressSettings(max_upload_bytes=len(CHELSEA) - 1)))
    too_large = "image 0: Image is larger than this service accepts."
    expect(small.post(INFER, json=json_request(B64_CAT)), 413, too_large)
    busy = TestClient(make_app(IngressSettings(max_in_flight=1)))
    expect(
        busy.post(INFER, json=json_request(B64_CAT, B64_CUP)),
        503,
        "The service is overloaded; retry later.",
        retry_after="1",
    )
    monkeypatch.setattr(router_module, "MAX_OIP_BODY_BYTES", 1000)
    expect(
        small.post(INFER, json=json_request(B64_CAT)),
        413,
        "Image is larger than this service accepts.",
    )


def test_a_bug_is_a_500_without_details() -> None:
    def broken(pixels: np.ndarray) -> np.ndarray:
        raise RuntimeError("secret detail")

    core = RequestCore(LocalBackend(MODEL, broken, "broken"), MODEL)
    answer = TestClient(local_api(core)).post(INFER, json=json_request(B64_CAT))
    assert (answer.status_code, answer.json()) == (500, {"error": "Internal error."})


def test_keys_and_rate_limits() -> None:
    keys = Access(keys=ApiKeys([hash_key("k-1")]))
    client = TestClient(make_app(access=keys))
    expect(
        client.post(INFER, json=json_request(B64_CAT)), 401, MISSING_KEY, www_authenticate="Bearer"
    )
    auth = {"Authorization": "Bearer k-1"}
    assert client.post(INFER, json=json_request(B64_CAT), headers=auth).status_code == 200
    assert (
        client.post(INFER, json=json_request(B64_CAT), headers={"X-API-Key": "k-1"}).status_code
        == 200
    )
    for path in ("/v2/health/live", "/v2/health/ready", "/v2", f"/v2/models/{MODEL}"):
        assert client.get(path).status_code == 200  # never guarded
    limited = TestClient(make_app(access=Access(limiter=RateLimiter(0.01, 1))))
    assert limited.post(INFER, json=json_request(B64_CAT)).status_code == 200
    answer = limited.post(INFER, json=json_request(B64_CAT))
    expect(answer, 429, "Too many requests; retry later.", retry_after="100")
