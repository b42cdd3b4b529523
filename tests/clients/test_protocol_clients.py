"""The official clients, unmodified, against the app on a loopback port: ``tritonclient[http]``
for the Open Inference Protocol and ``huggingface_hub.InferenceClient`` for Hugging Face's
image-classification. The app runs over an in-process core (the real decoder, a fake
model), so what is checked is the wire: what each client sends, and that it reads the
answers and raises its own errors with the right status."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.http as triton
from huggingface_hub import InferenceClient
from huggingface_hub.errors import BadRequestError, HfHubHTTPError
from tritonclient.utils import InferenceServerException

from imagetagger import __version__
from imagetagger.api.access import Access
from imagetagger.api.auth import ApiKeys, hash_key
from imagetagger.errors import INVALID_KEY, MISSING_KEY
from tests.protocol_apps import CAT, CHELSEA, COFFEE, CUP, DATA, MODEL, make_app, serve

INVALID = "Url is not pointing to a valid image format."
KEY = "k-1"


@pytest.fixture(scope="module")
def address() -> Iterator[str]:
    with serve(make_app()) as host_port:
        yield host_port


@pytest.fixture(scope="module")
def keyed_address() -> Iterator[str]:
    with serve(make_app(access=Access(keys=ApiKeys([hash_key(KEY)])))) as host_port:
        yield host_port


@pytest.fixture
def triton_client(address: str) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(url=address)
    yield client
    client.close()


def images(*contents: bytes, shape: list[int] | None = None, binary: bool = True):
    """The IMAGE input: raw bytes (binary), or base64 text in JSON."""
    data = [c if binary else base64.b64encode(c) for c in contents]
    tensor = triton.InferInput("IMAGE", shape or [len(contents)], "BYTES")
    array = np.array(data, dtype=np.object_).reshape(shape or [len(contents)])
    return tensor.set_data_from_numpy(array, binary_data=binary)


# --- tritonclient[http] ---


def test_triton_health_and_metadata(triton_client: triton.InferenceServerClient) -> None:
    assert triton_client.is_server_live()
    assert triton_client.is_server_ready()
    assert triton_client.is_model_ready(MODEL)
    assert not triton_client.is_model_ready("resnet50")
    assert triton_client.get_server_metadata() == {
        "name": "imagetagger",
        "version": __version__,
        "extensions": ["binary_tensor_data", "classification"],
    }
    metadata = triton_client.get_model_metadata(MODEL)
    assert metadata["inputs"] == [{"name": "IMAGE", "datatype": "BYTES", "shape": [-1]}]
    assert metadata["outputs"] == [
        {"name": "PROBABILITIES", "datatype": "FP32", "shape": [-1, 1000]}
    ]
    with pytest.raises(InferenceServerException) as caught:
        triton_client.get_model_metadata("resnet50")
    assert caught.value.status() == "404"
    assert caught.value.message() == "Request for unknown model: 'resnet50' is not found"


@pytest.mark.parametrize("binary_in", [True, False])
@pytest.mark.parametrize("binary_out", [True, False])
def test_triton_infer(
    triton_client: triton.InferenceServerClient, binary_in: bool, binary_out: bool
) -> None:
    result = triton_client.infer(
        MODEL,
        [images(CHELSEA, binary=binary_in)],
        outputs=[triton.InferRequestedOutput("PROBABILITIES", binary_data=binary_out)],
        request_id="req-1",
    )
    assert result.get_response()["id"] == "req-1"
    probabilities = result.as_numpy("PROBABILITIES")
    assert probabilities.dtype == np.float32 and probabilities.shape == (1, 1000)
    assert np.array_equal(probabilities[0], CAT)


def test_triton_batch_of_two_with_no_outputs_named(
    triton_client: triton.InferenceServerClient,
) -> None:
    result = triton_client.infer(MODEL, [images(CHELSEA, COFFEE, shape=[2, 1])])
    assert np.array_equal(result.as_numpy("PROBABILITIES"), np.stack([CAT, CUP]))
    compressed = triton_client.infer(
        MODEL, [images(COFFEE, CHELSEA, binary=False)], request_compression_algorithm="gzip"
    )
    assert np.array_equal(compressed.as_numpy("PROBABILITIES"), np.stack([CUP, CAT]))


@pytest.mark.parametrize("binary_out", [True, False])
def test_triton_classification(
    triton_client: triton.InferenceServerClient, binary_out: bool
) -> None:
    output = triton.InferRequestedOutput("PROBABILITIES", binary_data=binary_out, class_count=3)
    result = triton_client.infer(MODEL, [images(CHELSEA, COFFEE)], outputs=[output])
    top = result.as_numpy("PROBABILITIES")
    assert top.shape == (2, 3)
    as_text = [[x.decode() if isinstance(x, bytes) else x for x in row] for row in top]
    assert as_text == [
        ["0.625000:285:Egyptian_cat", "0.250000:281:tabby", "0.062500:282:tiger_cat"],
        ["0.500000:967:espresso", "0.250000:968:cup", "0.125000:504:coffee_mug"],
    ]


def test_triton_errors(triton_client: triton.InferenceServerClient) -> None:
    cases = [
        (MODEL, images(b"not an image"), "400", f"image 0: {INVALID}"),
        (MODEL, images(CHELSEA, b"GIF89a"), "400", f"image 1: {INVALID}"),
        (MODEL, images(b"not an image", binary=False), "400", f"image 0: {INVALID}"),
        ("resnet50", images(CHELSEA), "404", "Request for unknown model: 'resnet50' is not found"),
    ]
    for model, tensor, status, message in cases:
        with pytest.raises(InferenceServerException) as caught:
            triton_client.infer(model, [tensor])
        assert (caught.value.status(), caught.value.message()) == (status, message)
    wrong = triton.InferInput("IMAGE", [1], "FP32").set_data_from_numpy(np.zeros(1, np.float32))
    with pytest.raises(InferenceServerException) as caught:
        triton_client.infer(MODEL, [wrong])
    assert caught.value.status() == "400"
    assert caught.value.message() == (
        "Input 'IMAGE' has datatype \"FP32\"; this model takes BYTES (encoded images)"
    )


def test_triton_keys(keyed_address: str) -> None:
    client = triton.InferenceServerClient(url=keyed_address)
    try:
        with pytest.raises(InferenceServerException) as caught:
            client.infer(MODEL, [images(CHELSEA)])
        assert (caught.value.status(), caught.value.message()) == ("401", MISSING_KEY)
        result = client.infer(MODEL, [images(CHELSEA)], headers={"Authorization": f"Bearer {KEY}"})
        assert np.array_equal(result.as_numpy("PROBABILITIES")[0], CAT)
        assert client.is_server_ready()  # health and metadata never need a key
    finally:
        client.close()


# --- huggingface_hub.InferenceClient ---


def hf_client(address: str, **options) -> InferenceClient:
    return InferenceClient(model=f"http://{address}/models/{MODEL}", **options)


def test_hf_image_classification(address: str) -> None:
    client = hf_client(address)
    answer = client.image_classification(DATA / "chelsea.jpg")  # a path: sent raw
    assert [(x.label, x.score) for x in answer][:3] == [
        ("Egyptian cat", 0.625),
        ("tabby", 0.25),
        ("tiger cat", 0.0625),
    ]
    assert len(answer) == 5
    answer = client.image_classification(COFFEE, top_k=2)  # bytes with a parameter: JSON
    assert [(x.label, x.score) for x in answer] == [("espresso", 0.5), ("cup", 0.25)]
    answer = client.image_classification(CHELSEA, top_k=1, function_to_apply="none")
    assert answer[0].label == "Egyptian cat"
    assert answer[0].score == float(np.log(np.float32(0.625)))


def test_hf_errors(address: str) -> None:
    with pytest.raises(BadRequestError) as caught:
        hf_client(address).image_classification(b"not an image")
    assert caught.value.response.status_code == 400
    assert caught.value.server_message == INVALID
    with pytest.raises(HfHubHTTPError) as caught:
        InferenceClient(model=f"http://{address}/models/gpt2").image_classification(CHELSEA)
    assert caught.value.response.status_code == 404
    assert caught.value.server_message == "Model gpt2 does not exist"


def test_hf_keys(keyed_address: str) -> None:
    with pytest.raises(HfHubHTTPError) as caught:
        hf_client(keyed_address, token="k-2").image_classification(CHELSEA)
    assert caught.value.response.status_code == 401
    assert caught.value.server_message == INVALID_KEY
    answer = hf_client(keyed_address, token=KEY).image_classification(CHELSEA)
    assert answer[0].label == "Egyptian cat"


def test_triton_with_a_model_version(triton_client: triton.InferenceServerClient) -> None:
    """The served model's one version, "1", on the versioned paths; any other is a 404."""
    assert triton_client.is_model_ready(MODEL, model_version="1")
    assert not triton_client.is_model_ready(MODEL, model_version="2")
    assert triton_client.get_model_metadata(MODEL, model_version="1")["name"] == MODEL
    result = triton_client.infer(MODEL, [images(CHELSEA)], model_version="1")
    assert np.array_equal(result.as_numpy("PROBABILITIES")[0], CAT)
    with pytest.raises(InferenceServerException) as caught:
        triton_client.infer(MODEL, [images(CHELSEA)], model_version="2")
    assert caught.value.status() == "404"
    assert caught.value.message() == f"Request for unknown model: '{MODEL}' version 2 is not found"
