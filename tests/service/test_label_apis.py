"""General labels and the commercial label APIs on the real service, driven by their
official, unmodified clients: ``google-cloud-vision`` (REST transport) and ``boto3``.

The confidences are checked against the service's own ``/predictions`` answer for the
same bytes: a general label is the summed probability of the classes under it. Keys are
checked in ``test_security.py`` (the keyed app).
"""

from __future__ import annotations

import base64
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.config import Config
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import vision

from imagetagger.hierarchy import general_labels
from imagetagger.labels import LABELS
from tests import images
from tests.photos import CATS, CHELSEA
from tests.service.helpers import Service

FORBIDDEN_URI = "http://127.0.0.1:9/cat.jpg"  # loopback, outside allowed_networks


def vision_client(base_url: str, api_key: str | None = None) -> vision.ImageAnnotatorClient:
    """The official client on its REST transport, pointed at ``base_url``."""
    if api_key is not None:  # the client sends it as x-goog-api-key
        options = ClientOptions(api_endpoint=base_url, api_key=api_key)
        return vision.ImageAnnotatorClient(transport="rest", client_options=options)
    return vision.ImageAnnotatorClient(
        transport="rest",
        client_options=ClientOptions(api_endpoint=base_url),
        credentials=AnonymousCredentials(),
    )


def rekognition_client(base_url: str, key: str = "AKIDIMAGETAGGER") -> Any:
    return boto3.client(
        "rekognition",
        endpoint_url=base_url,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key="unused",
        config=Config(retries={"total_max_attempts": 1}),
    )


def probabilities_of(service: Service, data: bytes) -> np.ndarray:
    """The model's 1000 probabilities for ``data``, read off ``/predictions?top=1000``."""
    answer = service.post(
        "/predictions", params={"top": 1000}, files={"file": ("x.jpg", data, "image/jpeg")}
    )
    assert answer.status_code == 200, answer.text
    probabilities = np.zeros(len(LABELS))
    for prediction in answer.json()["predictions"]:
        probabilities[LABELS.index(prediction["label"])] = prediction["confidence"]
    return probabilities


@pytest.fixture(scope="module")
def chelsea_general(service: Service) -> dict[str, float]:
    """Chelsea's general labels by name, computed here from the fine probabilities."""
    return {
        label.name: label.confidence
        for label in general_labels(probabilities_of(service, CHELSEA), minconf=0.0)
    }


def test_predictions_answer_as_before_unless_general_labels_are_asked_for(
    service: Service, chelsea_general: dict[str, float]
) -> None:
    url = service.image_url("chelsea.jpg")
    plain = service.predict(url, top=3)
    assert plain.status_code == 200
    assert set(plain.json()) == {"url", "predictions"}
    assert plain.json()["predictions"][0]["label"] in CATS
    fine = service.predict(url, top=3, labels="fine")
    assert fine.content == plain.content
    general = service.predict(url, top=3, labels="general").json()
    assert general["predictions"] == plain.json()["predictions"]
    names = [label["label"] for label in general["general"]]
    assert len(names) == 3 and "cat" in names and "domestic cat" in names
    cat = next(label for label in general["general"] if label["label"] == "cat")
    assert cat["confidence"] == pytest.approx(chelsea_general["cat"], abs=1e-6)
    assert cat["id"] == "n02121620" and "feline" in cat["parents"]
    assert service.predict(url, labels="coarse").status_code == 422


def test_general_labels_default_to_the_confident_ones_and_cover_uploads_and_batches(
    service: Service,
) -> None:
    upload = service.post(
        "/predictions",
        params={"labels": "general"},
        files={"file": ("cat.jpg", CHELSEA, "image/jpeg")},
    ).json()
    assert len(upload["predictions"]) == 1  # the fine default stays top-1
    confidences = [label["confidence"] for label in upload["general"]]
    assert 1 < len(confidences) <= 10 and min(confidences) >= 0.5
    batch = service.post(
        "/predictions/batch",
        json={"urls": [service.image_url("chelsea.jpg")], "labels": "general", "top": 2},
    ).json()
    assert [label["label"] for label in batch["results"][0]["general"]][:1] != []


def test_cloud_vision_client_reads_labels_with_summed_confidence(
    service: Service, chelsea_general: dict[str, float]
) -> None:
    response = vision_client(service.base_url).label_detection(
        image=vision.Image(content=CHELSEA), max_results=8
    )
    annotations = {a.description: a for a in response.label_annotations}
    assert len(response.label_annotations) <= 8
    assert "Cat" in annotations and "Domestic cat" in annotations
    assert annotations["Cat"].mid == "n02121620"
    assert annotations["Cat"].score == pytest.approx(chelsea_general["cat"], abs=1e-5)
    assert annotations["Cat"].topicality == annotations["Cat"].score
    # The specific label first, then its groups, nearest first (docs/API.md).
    assert response.label_annotations[0].description in {"Egyptian cat", "Tabby", "Tiger cat"}
    scores = [a.score for a in response.label_annotations]
    assert scores[1:] == sorted(scores[1:]) and min(scores) >= 0.5
    three = vision_client(service.base_url).label_detection(
        image=vision.Image(content=CHELSEA), max_results=3
    )
    assert len(three.label_annotations) == 3


def test_cloud_vision_fetches_image_uris_through_the_downloader(service: Service) -> None:
    image = vision.Image(source=vision.ImageSource(image_uri=service.image_url("chelsea.jpg")))
    response = vision_client(service.base_url).label_detection(image=image)
    assert "Cat" in [a.description for a in response.label_annotations]


def test_cloud_vision_batch_of_16_mixes_successes_and_per_image_errors(service: Service) -> None:
    label = vision.Feature(type_=vision.Feature.Type.LABEL_DETECTION, max_results=5)

    def request(image: vision.Image) -> vision.AnnotateImageRequest:
        return vision.AnnotateImageRequest(image=image, features=[label])

    bad = [
        (vision.Image(content=b"not an image"), 3),  # INVALID_ARGUMENT
        (vision.Image(content=images.png_bomb()), 3),  # over max_image_pixels
        (vision.Image(source=vision.ImageSource(image_uri=FORBIDDEN_URI)), 7),
        (vision.Image(source=vision.ImageSource(image_uri=service.image_url("missing.jpg"))), 5),
    ]
    cases = [(vision.Image(content=CHELSEA), 0)] * 12 + bad
    client = vision_client(service.base_url)
    answer = client.batch_annotate_images(requests=[request(image) for image, _ in cases])
    assert len(answer.responses) == 16
    for (_, code), response in zip(cases, answer.responses, strict=True):
        assert response.error.code == code, response.error
        if code == 0:
            assert "Cat" in [a.description for a in response.label_annotations]
        else:
            assert not response.label_annotations


def test_cloud_vision_malformed_body_is_googles_400(service: Service) -> None:
    answer = service.post("/v1/images:annotate", data=b"{", headers={"content-type": "text/plain"})
    assert answer.status_code == 400
    assert answer.json()["error"]["status"] == "INVALID_ARGUMENT"
    over = {"requests": [{"image": {"content": base64.b64encode(CHELSEA).decode()}}] * 17}
    assert service.post("/v1/images:annotate", json=over).status_code == 400


def test_rekognition_client_reads_labels_in_percent(
    service: Service, chelsea_general: dict[str, float]
) -> None:
    client = rekognition_client(service.base_url)
    answer = client.detect_labels(Image={"Bytes": CHELSEA}, MaxLabels=5, MinConfidence=50)
    labels = {label["Name"]: label for label in answer["Labels"]}
    assert 1 <= len(labels) <= 5 and "Cat" in labels
    cat = labels["Cat"]
    assert cat["Confidence"] == pytest.approx(100 * chelsea_general["cat"], abs=1e-3)
    assert {"Name": "Feline"} in cat["Parents"] and cat["Instances"] == []
    assert {"Name": "Animals and Pets"} in cat["Categories"]
    assert all(label["Confidence"] >= 50 for label in answer["Labels"])
    assert answer["LabelModelVersion"].startswith("imagetagger-")
    everything = client.detect_labels(Image={"Bytes": CHELSEA}, MinConfidence=0)
    assert len(everything["Labels"]) > 5


def test_rekognition_errors_are_boto3s_named_exceptions(service: Service) -> None:
    client = rekognition_client(service.base_url)
    with pytest.raises(client.exceptions.InvalidImageFormatException):
        client.detect_labels(Image={"Bytes": b"not an image"})
    with pytest.raises(client.exceptions.ImageTooLargeException):
        client.detect_labels(Image={"Bytes": images.random_bytes(5 * 2**20 + 1)})
    with pytest.raises(client.exceptions.InvalidParameterException, match="S3"):
        client.detect_labels(Image={"S3Object": {"Bucket": "photos", "Name": "cat.jpg"}})


def test_post_root_without_an_aws_target_is_still_not_a_route(service: Service) -> None:
    answer = service.post("/", json={})
    assert answer.status_code == 405
    assert answer.json()["error"]["type"] == "MethodNotAllowed"
