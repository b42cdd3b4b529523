"""The official Cloud Vision and Rekognition clients, unmodified, read our wire formats.

A stand-in server on 127.0.0.1 answers with imagetagger.label_apis and a fixed
probability vector (no model, no Ray): the Chelsea photo's top classes, as /ui shows
them. Whatever decodes as an image gets that vector; anything else is InvalidImage.
The tests then drive ``google.cloud.vision.ImageAnnotatorClient`` (REST transport) and
``boto3.client("rekognition")`` at it.
"""

from __future__ import annotations

import base64
import io
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import numpy as np
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError
from google.api_core import exceptions as google_errors
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import vision
from PIL import Image

from imagetagger.api.auth import ApiKeys, hash_key
from imagetagger.errors import (
    ForbiddenURL,
    ImageTaggerError,
    InvalidImage,
    Overloaded,
    RateLimited,
    UnreachableURL,
)
from imagetagger.hierarchy import general_labels
from imagetagger.label_apis import cloud_vision, rekognition, sigv4
from imagetagger.labels import LABELS, NUM_CLASSES
from tests.photos import CHELSEA

KEY = "test-key-0123456789"
MAX_IMAGE_BYTES = 200_000  # the stand-in's byte cap (chelsea.jpg is well under it)
UNREACHABLE = "http://127.0.0.1:9/cat.jpg"  # the stand-in never fetches; loopback anyway
FORBIDDEN = "http://127.0.0.2:8/forbidden.jpg"
MODEL_VERSION = "imagetagger-efficientnet_lite2-wordnet3.0"


def chelsea_probabilities() -> np.ndarray:
    probs = np.zeros(NUM_CLASSES)
    for label, value in (("Egyptian_cat", 0.614), ("tiger_cat", 0.142), ("tabby", 0.095)):
        probs[LABELS.index(label)] = value
    probs[LABELS.index("lynx")] = 0.012
    rest = probs == 0
    probs[rest] = (1 - probs.sum()) / rest.sum()
    return probs


PROBS = chelsea_probabilities()
BY_NAME = {label.name: label for label in general_labels(PROBS, minconf=0.0)}


def tag(content: bytes) -> np.ndarray:
    """The stand-in model: a decodable image gets the fixed vector."""
    try:
        Image.open(io.BytesIO(content)).verify()
    except Exception:
        raise InvalidImage() from None
    return PROBS


def fetch(uri: str) -> bytes:
    """The stand-in Downloader: two URIs fail as the real one would."""
    if uri == UNREACHABLE:
        raise UnreachableURL()
    if uri == FORBIDDEN:
        raise ForbiddenURL()
    return CHELSEA


@dataclass
class Standin:
    keys: ApiKeys | None = None
    clock_skew: timedelta = timedelta(0)  # the server's clock, ahead of the client's
    refuse: ImageTaggerError | None = None  # answer every call with this error
    seen: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)


class Handler(BaseHTTPRequestHandler):
    standin: Standin

    def log_message(self, *args: Any) -> None:  # keep the test output clean
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        self.standin.seen.append((self.path, dict(self.headers), body))
        if urlsplit(self.path).path == "/v1/images:annotate":
            self._vision(body)
        elif self.path == "/":
            self._rekognition(body)
        else:
            self._send(404, {"error": "no such route"})

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        content_type = "application/x-amz-json-1.1" if "__type" in body else "application/json"
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _vision(self, body: bytes) -> None:
        query = parse_qs(urlsplit(self.path).query)
        try:
            cloud_vision.authenticate(
                self.standin.keys,
                self.headers.get_all("x-goog-api-key") or [],
                query.get("key", []),
            )
            if self.standin.refuse is not None:
                raise cloud_vision.http_error(self.standin.refuse)
            jobs = cloud_vision.parse_request(body, max_image_bytes=MAX_IMAGE_BYTES)
        except cloud_vision.VisionError as error:
            self._send(error.http_status, error.body(), error.headers)
            return
        answers = []
        for job in jobs:
            if isinstance(job, dict):
                answers.append(job)
                continue
            try:
                content = job.content if job.content is not None else fetch(job.uri or "")
                answers.append(cloud_vision.image_labels(tag(content), job.max_results))
            except ImageTaggerError as error:
                answers.append(cloud_vision.rpc_status(error))
        self._send(200, cloud_vision.annotate_response(answers))

    def _rekognition(self, body: bytes) -> None:
        try:
            sigv4.authenticate(
                self.standin.keys,
                self.headers.get_all("authorization") or [],
                self.headers.get_all("x-amz-date") or [],
                now=datetime.now(UTC) + self.standin.clock_skew,
            )
            if self.standin.refuse is not None:
                raise rekognition.aws_error(self.standin.refuse)
            request = rekognition.parse_request(body, self.headers.get("x-amz-target"))
            try:
                probs = tag(request.image)
            except ImageTaggerError as error:
                raise rekognition.aws_error(error) from None
        except rekognition.AwsError as error:
            self._send(error.http_status, error.body(), error.headers)
            return
        self._send(200, rekognition.detect_labels_response(probs, request, MODEL_VERSION))


@pytest.fixture
def standin() -> Iterator[tuple[Standin, str]]:
    state = Standin()
    handler = type("StandinHandler", (Handler,), {"standin": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def vision_client(endpoint: str, api_key: str | None = None) -> vision.ImageAnnotatorClient:
    if api_key is None:
        return vision.ImageAnnotatorClient(
            transport="rest",
            client_options=ClientOptions(api_endpoint=endpoint),
            credentials=AnonymousCredentials(),
        )
    return vision.ImageAnnotatorClient(
        transport="rest", client_options=ClientOptions(api_endpoint=endpoint, api_key=api_key)
    )


def rekognition_client(endpoint: str, key: str = KEY):
    return boto3.client(
        "rekognition",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key="not-checked",
        config=Config(retries={"total_max_attempts": 1}),
    )


# --- Cloud Vision -------------------------------------------------------------------


def test_vision_label_detection_reads_general_labels(standin) -> None:
    state, endpoint = standin
    response = vision_client(endpoint).label_detection(
        image=vision.Image(content=CHELSEA), max_results=12
    )
    path, _, body = state.seen[-1]
    # One parameter "$alt" = "json;enum-encoding=int", percent-encoded on the wire.
    assert path == "/v1/images:annotate?%24alt=json%3Benum-encoding%3Dint"
    assert parse_qs(urlsplit(path).query) == {"$alt": ["json;enum-encoding=int"]}
    sent = json.loads(body)
    assert sent["requests"][0]["features"] == [{"type": 4, "maxResults": 12}]
    assert base64.b64decode(sent["requests"][0]["image"]["content"]) == CHELSEA

    assert not response.error.message
    annotations = response.label_annotations
    # Over the 0.5 floor: the specific label first, then its groups, nearest first.
    assert [a.description for a in annotations] == [
        "Egyptian cat",
        "Domestic cat",
        "Cat",
        "Feline",
        "Mammal",
        "Animal",
    ]
    by_description = {a.description: a for a in annotations}
    assert by_description["Cat"].mid == "n02121620"
    assert by_description["Cat"].score == pytest.approx(BY_NAME["cat"].confidence, rel=1e-6)
    assert by_description["Domestic cat"].score == pytest.approx(0.851, abs=1e-3)
    assert by_description["Egyptian cat"].score == pytest.approx(0.614, rel=1e-6)
    assert by_description["Cat"].topicality == by_description["Cat"].score


def test_vision_max_results_and_score_floor(standin) -> None:
    _, endpoint = standin
    client = vision_client(endpoint)
    assert (
        len(
            client.label_detection(
                image=vision.Image(content=CHELSEA), max_results=3
            ).label_annotations
        )
        == 3
    )
    every = client.label_detection(image=vision.Image(content=CHELSEA), max_results=1000)
    assert every.label_annotations
    assert all(a.score >= cloud_vision.MIN_SCORE for a in every.label_annotations)
    default = client.label_detection(image=vision.Image(content=CHELSEA))
    assert 3 <= len(default.label_annotations) <= cloud_vision.DEFAULT_MAX_RESULTS
    assert all(a.score >= cloud_vision.MIN_SCORE for a in default.label_annotations)


def test_vision_enum_name_is_as_good_as_its_number(standin) -> None:
    _, endpoint = standin
    for feature_type in ("LABEL_DETECTION", 4):
        request = {
            "image": {"content": base64.b64encode(CHELSEA).decode()},
            "features": [{"type": feature_type, "max_results": 2}],  # snake_case is fine too
        }
        answer = requests.post(f"{endpoint}/v1/images:annotate", json={"requests": [request]})
        assert answer.status_code == 200
        names = [a["description"] for a in answer.json()["responses"][0]["labelAnnotations"]]
        assert names == ["Egyptian cat", "Domestic cat"]  # the specific label, its group


def test_vision_batch_of_16_mixes_successes_and_errors(standin) -> None:
    _, endpoint = standin
    label = vision.Feature(type_=vision.Feature.Type.LABEL_DETECTION, max_results=5)
    good = vision.AnnotateImageRequest(image=vision.Image(content=CHELSEA), features=[label])
    cases = [
        (good, 0),
        (
            vision.AnnotateImageRequest(
                image=vision.Image(content=b"not an image"), features=[label]
            ),
            3,
        ),
        (
            vision.AnnotateImageRequest(
                image=vision.Image(content=b"\xff" * (MAX_IMAGE_BYTES + 1)), features=[label]
            ),
            3,
        ),
        (
            vision.AnnotateImageRequest(
                image=vision.Image(source=vision.ImageSource(image_uri=UNREACHABLE)),
                features=[label],
            ),
            5,
        ),
        (
            vision.AnnotateImageRequest(
                image=vision.Image(source=vision.ImageSource(image_uri=FORBIDDEN)), features=[label]
            ),
            7,
        ),
        (
            vision.AnnotateImageRequest(
                image=vision.Image(
                    source=vision.ImageSource(image_uri="https://example.com/c.jpg")
                ),
                features=[label],
            ),
            0,
        ),
        (
            vision.AnnotateImageRequest(
                image=vision.Image(source=vision.ImageSource(gcs_image_uri="gs://b/c.jpg")),
                features=[label],
            ),
            3,
        ),
        (
            vision.AnnotateImageRequest(
                image=vision.Image(content=CHELSEA),
                features=[vision.Feature(type_=vision.Feature.Type.FACE_DETECTION)],
            ),
            12,
        ),
        (vision.AnnotateImageRequest(image=vision.Image(content=CHELSEA)), 3),
    ]
    cases += [(good, 0)] * (16 - len(cases))
    response = vision_client(endpoint).batch_annotate_images(requests=[r for r, _ in cases])
    assert len(response.responses) == 16
    for (_, code), answer in zip(cases, response.responses, strict=True):
        assert answer.error.code == code, answer.error.message
        assert bool(answer.label_annotations) == (code == 0)
    assert response.responses[1].error.message == "Bad image data."
    assert "larger" in response.responses[2].error.message

    with pytest.raises(google_errors.BadRequest, match="at most 16"):
        vision_client(endpoint).batch_annotate_images(requests=[good] * 17)


def test_vision_malformed_body_is_a_400_in_googles_shape(standin) -> None:
    _, endpoint = standin
    for body in (
        b"{",
        b'{"requests": []}',
        b'{"requests": [{"image": {"content": "%%%"}}]}',
        b'{"requests": [{"features": [{"type": "NOPE"}]}]}',
        b'{"request": []}',
    ):
        answer = requests.post(f"{endpoint}/v1/images:annotate", data=body)
        assert answer.status_code == 400, body
        error = answer.json()["error"]
        assert error["code"] == 400 and error["status"] == "INVALID_ARGUMENT"
        assert error["message"].startswith("Invalid JSON payload received.")


def test_vision_keys(standin) -> None:
    state, endpoint = standin
    state.keys = ApiKeys([hash_key(KEY)])
    image = vision.Image(content=CHELSEA)
    with pytest.raises(google_errors.Forbidden, match="missing a valid API key"):
        vision_client(endpoint).label_detection(image=image)
    with pytest.raises(google_errors.Forbidden):
        vision_client(endpoint, api_key="wrong-key").label_detection(image=image)
    response = vision_client(endpoint, api_key=KEY).label_detection(image=image)
    assert response.label_annotations
    assert state.seen[-1][1]["x-goog-api-key"] == KEY  # how the client sends it
    query = requests.post(
        f"{endpoint}/v1/images:annotate?key={KEY}",
        json={
            "requests": [
                {
                    "image": {"content": base64.b64encode(CHELSEA).decode()},
                    "features": [{"type": 4}],
                }
            ]
        },
    )
    assert query.status_code == 200


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (RateLimited(retry_after_s=3), google_errors.TooManyRequests),
        (Overloaded(), google_errors.ServiceUnavailable),
    ],
)
def test_vision_whole_call_errors(standin, error, expected) -> None:
    state, endpoint = standin
    state.refuse = error
    request = vision.AnnotateImageRequest(
        image=vision.Image(content=CHELSEA),
        features=[vision.Feature(type_=vision.Feature.Type.LABEL_DETECTION)],
    )
    with pytest.raises(expected):
        vision_client(endpoint).batch_annotate_images(requests=[request], retry=None)


# --- Rekognition --------------------------------------------------------------------


def test_rekognition_detect_labels_reads_general_labels(standin) -> None:
    state, endpoint = standin
    response = rekognition_client(endpoint).detect_labels(
        Image={"Bytes": CHELSEA}, MaxLabels=12, MinConfidence=10
    )
    _, headers, body = state.seen[-1]
    assert headers["X-Amz-Target"] == "RekognitionService.DetectLabels"
    assert headers["Content-Type"] == "application/x-amz-json-1.1"
    assert headers["Authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={KEY}/")
    assert json.loads(body)["MaxLabels"] == 12

    assert response["LabelModelVersion"] == MODEL_VERSION
    labels = {label["Name"]: label for label in response["Labels"]}
    assert [label["Name"] for label in response["Labels"]] == [
        "Egyptian cat",
        "Tiger cat",  # 14.2 %, over 10 %: the specific labels first
        "Domestic cat",
        "Cat",
        "Feline",
        "Mammal",
        "Animal",
    ]
    cat = labels["Cat"]
    assert cat["Confidence"] == pytest.approx(BY_NAME["cat"].confidence * 100)
    assert [p["Name"] for p in cat["Parents"]] == ["Feline", "Mammal", "Animal"]
    assert cat["Aliases"] == [{"Name": "True cat"}]
    assert cat["Categories"] == [{"Name": "Animals and Pets"}]
    assert cat["Instances"] == []
    assert labels["Egyptian cat"]["Confidence"] == pytest.approx(61.4)
    assert {"Name": "House cat"} in labels["Domestic cat"]["Aliases"]


def test_rekognition_max_labels_and_min_confidence(standin) -> None:
    _, endpoint = standin
    client = rekognition_client(endpoint)
    high = client.detect_labels(Image={"Bytes": CHELSEA}, MinConfidence=90)["Labels"]
    assert high and all(label["Confidence"] >= 90 for label in high)
    assert len(client.detect_labels(Image={"Bytes": CHELSEA}, MaxLabels=3)["Labels"]) == 3
    default = client.detect_labels(Image={"Bytes": CHELSEA})["Labels"]
    assert min(label["Confidence"] for label in default) >= 55
    assert {"Tiger cat", "Tabby"}.isdisjoint(label["Name"] for label in default)
    everything = client.detect_labels(Image={"Bytes": CHELSEA}, MinConfidence=0)["Labels"]
    assert len(everything) > 1000
    assert client.detect_labels(Image={"Bytes": CHELSEA}, MaxLabels=0)["Labels"] == []


def test_rekognition_named_exceptions(standin) -> None:
    _, endpoint = standin
    client = rekognition_client(endpoint)
    with pytest.raises(client.exceptions.InvalidImageFormatException):
        client.detect_labels(Image={"Bytes": b"not an image"})
    with pytest.raises(client.exceptions.ImageTooLargeException):
        client.detect_labels(Image={"Bytes": b"\xff" * (5 * 1024 * 1024 + 1)})
    with pytest.raises(client.exceptions.InvalidParameterException, match="S3Object"):
        client.detect_labels(Image={"S3Object": {"Bucket": "bucket", "Name": "cat.jpg"}})
    with pytest.raises(client.exceptions.InvalidParameterException, match="MinConfidence"):
        client.detect_labels(Image={"Bytes": CHELSEA}, MinConfidence=101)


@pytest.mark.parametrize(
    ("error", "name"),
    [
        (RateLimited(), "ProvisionedThroughputExceededException"),
        (Overloaded(), "ThrottlingException"),
    ],
)
def test_rekognition_limits(standin, error, name) -> None:
    state, endpoint = standin
    state.refuse = error
    client = rekognition_client(endpoint)
    with pytest.raises(getattr(client.exceptions, name)):
        client.detect_labels(Image={"Bytes": CHELSEA})


def test_rekognition_keys(standin) -> None:
    state, endpoint = standin
    state.keys = ApiKeys([hash_key(KEY)])
    assert rekognition_client(endpoint).detect_labels(Image={"Bytes": CHELSEA})["Labels"]
    with pytest.raises(ClientError) as unknown:
        rekognition_client(endpoint, key="wrong-key").detect_labels(Image={"Bytes": CHELSEA})
    assert unknown.value.response["Error"]["Code"] == "UnrecognizedClientException"
    state.clock_skew = timedelta(minutes=20)
    with pytest.raises(ClientError) as stale:
        rekognition_client(endpoint).detect_labels(Image={"Bytes": CHELSEA})
    assert stale.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert stale.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
