"""The label APIs' protocol functions, without a client: edge cases and error tables."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from imagetagger.api.auth import ApiKeys, hash_key
from imagetagger.errors import ERROR_TABLE, ImageTooLarge, InvalidRequest
from imagetagger.label_apis import cloud_vision, rekognition, sigv4
from imagetagger.label_apis.common import decode_base64, display_name
from imagetagger.labels import NUM_CLASSES

KEYS = ApiKeys([hash_key("k-123")])
NOW = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)


def auth_header(key: str = "k-123", date: str = "20261201") -> str:
    return (
        f"AWS4-HMAC-SHA256 Credential={key}/{date}/us-east-1/rekognition/aws4_request, "
        "SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=" + "0" * 64
    )


def test_base64_accepts_what_protobuf_json_accepts() -> None:
    data = bytes(range(256))
    for text in (
        base64.b64encode(data).decode(),
        base64.urlsafe_b64encode(data).decode(),
        base64.b64encode(data).decode().rstrip("="),
    ):
        assert decode_base64(text) == data
    for bad in ("%%%", "abc de", "a"):
        with pytest.raises(ValueError):
            decode_base64(bad)


def test_display_names_are_capitalised_like_theirs() -> None:
    assert display_name("cat") == "Cat"
    assert display_name("domestic cat") == "Domestic cat"
    assert display_name("Egyptian cat") == "Egyptian cat"
    assert display_name("iPod") == "iPod"


def test_every_domain_error_has_a_wire_form_in_both_apis() -> None:
    for error_class in [*ERROR_TABLE.values(), InvalidRequest]:
        assert error_class in cloud_vision.RPC_OF_ERROR or error_class.__name__ == "Unauthorized"
        assert error_class in rekognition.AWS_OF_ERROR
    assert cloud_vision.rpc_status(ImageTooLarge())["code"] == 3
    assert cloud_vision.http_error(ImageTooLarge()).body()["error"]["status"] == "INVALID_ARGUMENT"
    assert rekognition.aws_error(ImageTooLarge()).body()["__type"] == "ImageTooLargeException"


def vision_body(**request) -> str:
    return json.dumps({"requests": [request]})


def test_vision_parse_per_request_outcomes() -> None:
    content = base64.b64encode(b"abc").decode()
    (job,) = cloud_vision.parse_request(
        vision_body(image={"content": content}, features=[{"type": "LABEL_DETECTION"}])
    )
    assert job == cloud_vision.LabelJob(b"abc", None, cloud_vision.DEFAULT_MAX_RESULTS)
    (job,) = cloud_vision.parse_request(
        vision_body(
            image={"source": {"imageUri": "https://example.com/c.jpg"}},
            features=[{"type": 4, "maxResults": 3}, {"type": 4, "maxResults": 7}],
        )
    )
    assert job == cloud_vision.LabelJob(None, "https://example.com/c.jpg", 7)
    cases = {
        "no features": ({"image": {"content": content}}, 3),
        "unknown number": ({"image": {"content": content}, "features": [{"type": 99}]}, 3),
        "other feature": ({"image": {"content": content}, "features": [{"type": 1}]}, 12),
        "no image": ({"features": [{"type": 4}]}, 3),
        "ftp uri": ({"image": {"source": {"imageUri": "ftp://x/y"}}, "features": [{"type": 4}]}, 3),
        "too large": ({"image": {"content": content}, "features": [{"type": 4}]}, 3),
    }
    for name, (request, code) in cases.items():
        (status,) = cloud_vision.parse_request(vision_body(**request), max_image_bytes=2)
        assert isinstance(status, dict) and status["code"] == code, name


def test_vision_response_puts_statuses_in_error() -> None:
    probs = np.full(NUM_CLASSES, 1 / NUM_CLASSES)
    ok = cloud_vision.image_labels(probs, 5, min_score=0.5)
    assert ok == {}  # a flat vector under a strict floor: even "animal" (398 classes) is under
    answer = cloud_vision.annotate_response([ok, {"code": 3, "message": "Bad image data."}])
    assert answer == {"responses": [{}, {"error": {"code": 3, "message": "Bad image data."}}]}
    # By default (no floor sent) every photo gets its best 3 labels, as Google's do.
    default = cloud_vision.image_labels(probs, 5)["labelAnnotations"]
    assert len(default) == 3 and all(a["score"] < 0.5 for a in default)
    assert len(cloud_vision.image_labels(probs, 2)["labelAnnotations"]) == 2


def test_vision_keys_from_header_or_query() -> None:
    assert cloud_vision.authenticate(None, [], []) is None
    assert cloud_vision.authenticate(KEYS, ["k-123"], []) == KEYS.client_id("k-123")
    assert cloud_vision.authenticate(KEYS, ["k-123"], ["k-123"]) == KEYS.client_id("k-123")
    for header, query in (([], []), (["nope"], []), (["k-123"], ["other"])):
        with pytest.raises(cloud_vision.VisionError) as error:
            cloud_vision.authenticate(KEYS, header, query)
        assert error.value.http_status == 403


def rekognition_body(**fields) -> str:
    return json.dumps({"Image": {"Bytes": base64.b64encode(b"img").decode()}, **fields})


def test_rekognition_parse() -> None:
    request = rekognition.parse_request(rekognition_body(MaxLabels=4), rekognition.TARGET)
    assert request == rekognition.DetectLabelsRequest(b"img", 4, None)  # None: not sent
    bad = {
        "UnknownOperationException": (rekognition_body(), "RekognitionService.DetectFaces"),
        "SerializationException": ("{", rekognition.TARGET),
        "InvalidParameterException": (rekognition_body(MaxLabels=-1), rekognition.TARGET),
    }
    for name, (body, target) in bad.items():
        with pytest.raises(rekognition.AwsError) as error:
            rekognition.parse_request(body, target)
        assert error.value.error_type == name
    for fields in ({"Features": ["IMAGE_PROPERTIES"]}, {"Settings": {}}, {"Other": 1}):
        with pytest.raises(rekognition.AwsError, match=r"supported|Unknown"):
            rekognition.parse_request(rekognition_body(**fields), rekognition.TARGET)
    with pytest.raises(rekognition.AwsError) as error:
        rekognition.parse_request(rekognition_body(), rekognition.TARGET, max_image_bytes=2)
    assert error.value.error_type == "ImageTooLargeException"


def test_rekognition_confidence_filter_uses_the_answered_percent() -> None:
    probs = np.zeros(NUM_CLASSES)
    probs[0] = 0.3
    probs[1:] = 0.7 / (NUM_CLASSES - 1)
    labels = rekognition.labels(probs, None, 30.0)
    assert labels and all(label.confidence * 100 >= 30.0 for label in labels)


def test_rekognition_answers_every_photo_unless_a_floor_is_sent() -> None:
    probs = np.full(NUM_CLASSES, 1 / NUM_CLASSES)
    assert rekognition.parse_request(rekognition_body(), rekognition.TARGET).min_confidence is None
    default = rekognition.labels(probs, None, None)
    assert len(default) == 3  # under the default 50 %, the best 3 with their true confidence
    assert len(rekognition.labels(probs, 1, None)) == 1
    assert rekognition.labels(probs, None, 55.0) == []  # a MinConfidence sent is strict
    assert rekognition.labels(probs, 0, None) == []


def test_sigv4_scheme() -> None:
    date = NOW.strftime("%Y%m%dT%H%M%SZ")
    assert sigv4.authenticate(None, [], []) is None
    assert sigv4.authenticate(KEYS, [auth_header()], [date], now=NOW) == KEYS.client_id("k-123")
    assert sigv4.authenticate(KEYS, [auth_header()], [date], now=NOW + timedelta(minutes=14))
    cases = {
        "MissingAuthenticationTokenException": ([], [date], NOW),
        "IncompleteSignatureException": (["Bearer k-123"], [date], NOW),
        "UnrecognizedClientException": ([auth_header("other")], [date], NOW),
        "InvalidSignatureException": ([auth_header()], [date], NOW + timedelta(minutes=16)),
    }
    for name, (authorization, amz_date, now) in cases.items():
        with pytest.raises(rekognition.AwsError) as error:
            sigv4.authenticate(KEYS, authorization, amz_date, now=now)
        assert error.value.error_type == name
    with pytest.raises(rekognition.AwsError, match="Credential scope"):
        sigv4.authenticate(KEYS, [auth_header(date="20261130")], [date], now=NOW)
    with pytest.raises(rekognition.AwsError, match="X-Amz-Date"):
        sigv4.authenticate(KEYS, [auth_header()], [], now=NOW)


def test_an_error_echoing_a_lone_surrogate_can_still_be_written() -> None:
    """Found by the fuzzer: a JSON key "\\ud800" echoed in the message made a 500."""
    from fastapi.responses import JSONResponse

    body = json.dumps({"Image": {}, "\ud800x": 1})
    with pytest.raises(rekognition.AwsError) as raised:
        rekognition.parse_request(body, rekognition.TARGET)
    assert JSONResponse(raised.value.body()).status_code == 200  # rendered, no error
    assert "\\ud800" in raised.value.message
