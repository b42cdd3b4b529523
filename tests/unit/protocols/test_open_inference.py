"""The Open Inference Protocol (KServe V2 REST): its wire format byte for byte, without
an app (the routes: tests/unit/api/test_open_inference_routes.py)."""

from __future__ import annotations

import gzip
import json
import zlib

import numpy as np
import pytest

from imagetagger.protocols import open_inference as oip
from imagetagger.protocols import open_inference_requests as oip_requests
from tests.protocol_apps import (
    B64_CAT,
    B64_CUP,
    CAT,
    CHELSEA,
    COFFEE,
    CUP,
    MODEL,
    binary_request,
    json_request,
)


def parse(body: bytes | dict, header: str | None = None, limit: int = 2**20):
    if isinstance(body, dict):
        body = json.dumps(body).encode()
    return oip_requests.parse_infer_request(body, header, model=MODEL, max_image_bytes=limit)


def refused(body: bytes | dict, header: str | None = None, limit: int = 2**20) -> str:
    with pytest.raises(oip.JsonError) as caught:
        parse(body, header, limit)
    assert caught.value.status in (400, 413)
    return caught.value.message


def test_bytes_tensors_round_trip_as_tritonclient_writes_them() -> None:
    elements = [b"", b"a", bytes(range(256))]
    raw = oip.serialize_bytes(elements)
    assert raw[:8] == b"\x00\x00\x00\x00\x01\x00\x00\x00"
    assert oip.deserialize_bytes(raw) == elements
    for bad in (b"\x01\x00", b"\x05\x00\x00\x00abc"):
        with pytest.raises(ValueError):
            oip.deserialize_bytes(bad)


def test_classification_strings_are_tritons() -> None:
    rows = oip.classifications(np.stack([CAT, CUP]), 3)
    assert rows == [
        ["0.625000:285:Egyptian_cat", "0.250000:281:tabby", "0.062500:282:tiger_cat"],
        ["0.500000:967:espresso", "0.250000:968:cup", "0.125000:504:coffee_mug"],
    ]
    ties = np.full((1, 1000), 0.001, np.float32)
    assert oip.classifications(ties, 2) == [["0.001000:0:tench", "0.001000:1:goldfish"]]
    assert len(oip.classifications(ties, 5000)[0]) == 1000


def test_json_inputs_flat_or_nested() -> None:
    request = parse(json_request(B64_CAT, B64_CUP, id="r1"))
    assert request.images == [CHELSEA, COFFEE] and request.id == "r1"
    assert request.outputs == (oip.RequestedOutput("PROBABILITIES", False, 0),)
    nested = {"inputs": [{"name": "x", "datatype": "BYTES", "shape": [2, 1]}]}
    nested["inputs"][0]["data"] = [[B64_CAT], [B64_CUP]]
    assert parse(nested).images == [CHELSEA, COFFEE]  # any input name is the images


def test_binary_inputs_and_requested_outputs() -> None:
    body, headers = binary_request(
        CHELSEA,
        COFFEE,
        outputs=[
            {"name": "PROBABILITIES", "parameters": {"binary_data": True, "classification": 4}}
        ],
    )
    request = parse(body, headers[oip.HEADER_LENGTH])
    assert request.images == [CHELSEA, COFFEE]
    assert request.outputs == (oip.RequestedOutput("PROBABILITIES", True, 4),)
    default = parse({**json_request(B64_CAT), "parameters": {"binary_data_output": True}})
    assert default.outputs == (oip.RequestedOutput("PROBABILITIES", True, 0),)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{", "Unable to parse the request JSON"),
        (b"[]", "The request must be a JSON object"),
        ({"inputs": []}, f"Model '{MODEL}' takes exactly one input, 'IMAGE'"),
        (json_request(B64_CAT, id=7), "Unable to parse 'id'"),
        (
            {"inputs": [{"name": "IMAGE", "datatype": "FP32", "shape": [1], "data": [1.0]}]},
            "Input 'IMAGE' has datatype \"FP32\"; this model takes BYTES (encoded images)",
        ),
        (json_request(B64_CAT, shape=[1, 2]), "Input 'IMAGE' has shape [1, 2]"),
        (json_request(B64_CAT, shape=[True]), "Input 'IMAGE' has shape [true]"),
        (json_request(shape=[0]), "Input 'IMAGE' must hold 1 to 64 images, not 0"),
        (json_request(*[B64_CAT] * 65), "Input 'IMAGE' must hold 1 to 64 images, not 65"),
        (json_request(B64_CAT, shape=[2]), "Input 'IMAGE' holds 1 elements; its shape says 2"),
        (json_request("not base64!"), "Input 'IMAGE' element 0 is not base64"),
        (json_request(3), "Input 'IMAGE' element 0 must be a base64 string"),
        (
            {"inputs": [{"name": "IMAGE", "datatype": "BYTES", "shape": [1]}]},
            "Input 'IMAGE' needs 'data' or 'binary_data_size'",
        ),
        (
            json_request(B64_CAT, outputs=[{"name": "LOGITS"}]),
            f"Unexpected inference output \"LOGITS\" for model '{MODEL}'",
        ),
        (
            json_request(B64_CAT, outputs=[{"name": "PROBABILITIES"}] * 2),
            "Output 'PROBABILITIES' is requested more than once",
        ),
        (
            json_request(
                B64_CAT, outputs=[{"name": "PROBABILITIES", "parameters": {"classification": -1}}]
            ),
            "Unable to parse 'classification'",
        ),
        (
            json_request(B64_CAT, parameters={"binary_data_output": "yes"}),
            "Unable to parse 'binary_data_output'",
        ),
    ],
)
def test_bad_requests_are_400s_that_say_why(body, message: str) -> None:
    assert refused(body).startswith(message)


def test_bad_binary_data() -> None:
    body, headers = binary_request(CHELSEA)
    length = headers[oip.HEADER_LENGTH]
    assert refused(body, "x").startswith(f"Unable to parse {oip.HEADER_LENGTH}, got: x")
    assert refused(body, str(len(body) + 1)).startswith(f"{oip.HEADER_LENGTH} must be in")
    assert refused(body + b"!", length).startswith("Unexpected additional input data")
    assert refused(body[:-1], length).startswith("Unexpected size for input 'IMAGE'")
    stray = json.dumps(json_request(B64_CAT)).encode()  # a JSON input, then stray bytes
    assert refused(stray + b"xx", str(len(stray))).startswith("Unexpected additional input")
    header = {
        "inputs": [
            {"name": "IMAGE", "datatype": "BYTES", "shape": [1], "parameters": {}, "data": []}
        ]
    }
    header["inputs"][0]["parameters"]["binary_data_size"] = 3
    head = json.dumps(header).encode()
    assert refused(head + b"abc", str(len(head))).startswith("Input 'IMAGE' must set only one")
    del header["inputs"][0]["data"]
    head = json.dumps(header).encode()
    assert refused(head + b"abc", str(len(head))) == (
        "Input 'IMAGE' is not a BYTES tensor: a length prefix is cut short"
    )


def test_an_image_over_the_upload_cap_is_a_413() -> None:
    with pytest.raises(oip.JsonError) as caught:
        parse(json_request(B64_CAT, B64_CUP), limit=len(CHELSEA))
    assert (caught.value.status, caught.value.message) == (
        413,
        "image 1: Image is larger than this service accepts.",
    )


def test_request_bodies_may_be_compressed_as_tritonclient_does() -> None:
    body = json.dumps(json_request(B64_CAT)).encode()
    assert oip_requests.decode_content(gzip.compress(body), "gzip", 2**20) == body
    assert oip_requests.decode_content(zlib.compress(body), "deflate", 2**20) == body
    assert oip_requests.decode_content(body, None, 2**20) == body
    with pytest.raises(oip.JsonError) as caught:
        oip_requests.decode_content(
            gzip.compress(b"\0" * 2**20), "gzip", 2**19
        )  # a bomb stops early
    assert caught.value.status == 413
    for encoding, data in (("br", body), ("gzip", gzip.compress(body)[:-9]), ("gzip", b"xx")):
        with pytest.raises(oip.JsonError) as caught:
            oip_requests.decode_content(data, encoding, 2**20)
        assert caught.value.status == 400


def test_json_and_binary_renderings() -> None:
    probabilities = np.stack([CAT, CUP])
    request = oip.InferRequest("r1", [b"", b""], (oip.RequestedOutput("PROBABILITIES", False),))
    body, headers = oip.render_infer_response(MODEL, request, probabilities)
    assert headers == {"Content-Type": "application/json"}
    answer = json.loads(body)
    assert list(answer) == ["id", "model_name", "model_version", "outputs"]
    (output,) = answer["outputs"]
    assert (output["datatype"], output["shape"]) == ("FP32", [2, 1000])
    assert np.array_equal(np.array(output["data"], np.float32).reshape(2, 1000), probabilities)

    outputs = (oip.RequestedOutput("PROBABILITIES", True, 2),)
    body, headers = oip.render_infer_response(
        MODEL, oip.InferRequest(None, [], outputs), probabilities
    )
    length = int(headers[oip.HEADER_LENGTH])
    assert headers["Content-Type"] == "application/octet-stream"
    header = json.loads(body[:length])
    assert "id" not in header
    (output,) = header["outputs"]
    assert output == {
        "name": "PROBABILITIES",
        "datatype": "BYTES",
        "shape": [2, 2],
        "parameters": {"binary_data_size": len(body) - length},
    }
    assert oip.deserialize_bytes(body[length:]) == [
        b"0.625000:285:Egyptian_cat",
        b"0.250000:281:tabby",
        b"0.500000:967:espresso",
        b"0.250000:968:cup",
    ]
