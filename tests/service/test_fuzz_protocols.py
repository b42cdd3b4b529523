"""Fuzzing the bodies of the model-serving ecosystem's protocols against the live service.

The Open Inference Protocol's ``infer`` and Hugging Face's image-classification read
their bodies themselves (their wire formats are KServe's and Hugging Face's, not in
/openapi.json's schemas), so Schemathesis does not generate them (``test_fuzz.py``
leaves their routes out); these strategies do, near the real shapes and far from them:
JSON and binary tensor data, raw image bodies, headers that lie about lengths. Any
body gets a 200 or the protocol's ``{"error": "..."}`` with a 4xx, never a 5xx or a
stack trace. No body carries a URL: nothing here makes the service fetch anything.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import requests
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from imagetagger.protocols import open_inference as oip
from tests.photos import CHELSEA
from tests.service.helpers import Service

EXAMPLES = 50
IMAGES = st.sampled_from([CHELSEA, b"not an image", b"", b"GIF89a", b"{"])
# Requested outputs of a well-formed request: none named, JSON or binary, tensor or top K.
VALID_OUTPUTS = [None] + [
    [{"name": oip.OUTPUT_NAME, "parameters": {"binary_data": binary, "classification": k}}]
    for binary in (True, False)
    for k in (0, 1, 5, 1000)
]


def _json_values() -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-5, 2000),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=10),
    )
    return st.recursive(
        scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner)
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def oip_tensors() -> st.SearchStrategy[dict[str, Any]]:
    """An input tensor's JSON, its data as base64 strings (or not), or binary (size only)."""
    element = (
        IMAGES.map(_b64) | st.text(max_size=8) | st.integers() | IMAGES.map(lambda d: [_b64(d)])
    )
    return st.fixed_dictionaries(
        {},
        optional={
            "name": st.sampled_from([oip.INPUT_NAME, "x"]) | st.integers(),
            "datatype": st.sampled_from(["BYTES", "FP32", "bytes"]) | st.none(),
            "shape": st.sampled_from([[1], [2], [2, 1], [1, 2], [0], [65], [-1]])
            | st.lists(st.integers(-2, 70) | st.booleans(), max_size=3),
            "data": st.lists(element, max_size=3) | st.text(max_size=4),
            "parameters": st.fixed_dictionaries(
                {}, optional={"binary_data_size": st.integers(-1, 2**20) | st.text(max_size=3)}
            ),
        },
    )


def oip_outputs() -> st.SearchStrategy[Any]:
    parameters = st.fixed_dictionaries(
        {},
        optional={
            "binary_data": st.booleans() | st.integers(0, 1),
            "classification": st.integers(-2, 2000) | st.booleans() | st.text(max_size=2),
        },
    )
    output = st.fixed_dictionaries(
        {"name": st.sampled_from([oip.OUTPUT_NAME, "LOGITS"])}, optional={"parameters": parameters}
    )
    return st.lists(output, max_size=2) | st.none() | st.text(max_size=3)


def oip_requests() -> st.SearchStrategy[tuple[bytes, dict[str, str]]]:
    """A whole infer request: (body, headers), JSON alone or JSON then binary tensor data."""
    header = (
        st.fixed_dictionaries(
            {"inputs": st.lists(oip_tensors(), max_size=2) | _json_values()},
            optional={
                "id": st.text(max_size=5) | st.integers(),
                "parameters": st.fixed_dictionaries(
                    {}, optional={"binary_data_output": st.booleans() | st.text(max_size=2)}
                ),
                "outputs": oip_outputs(),
            },
        )
        | _json_values()
    )
    binary = st.lists(IMAGES, max_size=2).map(oip.serialize_bytes) | st.binary(max_size=16)

    @st.composite
    def build(draw: st.DrawFn) -> tuple[bytes, dict[str, str]]:
        head = json.dumps(draw(header)).encode()
        if not draw(st.booleans()):
            return head, {}
        raw = draw(binary)
        length = draw(
            st.sampled_from([str(len(head))]) | st.integers(-3, 2**16).map(str) | st.just("x")
        )
        return head + raw, {oip.HEADER_LENGTH: length}

    @st.composite
    def near_valid(draw: st.DrawFn) -> tuple[bytes, dict[str, str]]:
        images = draw(st.lists(IMAGES | st.just(CHELSEA), min_size=1, max_size=3))
        tensor = {"name": oip.INPUT_NAME, "datatype": "BYTES", "shape": [len(images)]}
        request: dict[str, Any] = {"inputs": [tensor]}
        outputs = draw(st.sampled_from(VALID_OUTPUTS))
        if outputs is not None:
            request["outputs"] = outputs
        if not draw(st.booleans()):
            tensor["data"] = [_b64(image) for image in images]
            return json.dumps(request).encode(), {}
        raw = oip.serialize_bytes(images)
        tensor["parameters"] = {"binary_data_size": len(raw)}
        head = json.dumps(request).encode()
        return head + raw, {oip.HEADER_LENGTH: str(len(head))}

    return build() | near_valid()


def hf_requests() -> st.SearchStrategy[bytes]:
    """Raw image bodies, the JSON form near its shape, and JSON far from it."""
    parameters = st.fixed_dictionaries(
        {},
        optional={
            "top_k": st.integers(-2, 2000) | st.none() | st.text(max_size=2) | st.booleans(),
            "function_to_apply": st.sampled_from(["softmax", "sigmoid", "none", "relu"])
            | st.none(),
        },
    )
    form = st.fixed_dictionaries(
        {"inputs": IMAGES.map(_b64) | st.text(max_size=8) | st.integers()},
        optional={"parameters": parameters | _json_values()},
    )
    return (
        IMAGES
        | st.binary(max_size=32)
        | (form | _json_values()).map(lambda body: json.dumps(body).encode())
    )


def check_oip(
    session: requests.Session, base_url: str, model: str, body: bytes, headers: dict
) -> None:
    answer = session.post(
        f"{base_url}/v2/models/{model}/infer", data=body, headers=headers, timeout=60
    )
    assert answer.status_code in (200, 400, 413), answer.text
    if answer.status_code != 200:
        assert set(answer.json()) == {"error"} and isinstance(answer.json()["error"], str)
        return
    length = answer.headers.get(oip.HEADER_LENGTH)
    header = json.loads(answer.content[: int(length)] if length else answer.content)
    assert header["model_name"] == model and len(header["outputs"]) == 1


def check_hf(session: requests.Session, base_url: str, model: str, body: bytes) -> None:
    answer = session.post(f"{base_url}/models/{model}", data=body, timeout=60)
    assert answer.status_code in (200, 400, 413), answer.text
    labels = answer.json()
    if answer.status_code != 200:
        assert set(labels) == {"error"} and isinstance(labels["error"], str)
        return
    scores = [label["score"] for label in labels]
    assert scores == sorted(scores, reverse=True) and 1 <= len(scores) <= 1000


def fuzz_protocol_bodies(base_url: str, model: str, examples: int = EXAMPLES) -> None:
    """Send ``examples`` generated bodies to each protocol and check every answer."""
    session = requests.Session()

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(infer=oip_requests(), classify=hf_requests())
    def fuzz(infer: tuple[bytes, dict[str, str]], classify: bytes) -> None:
        check_oip(session, base_url, model, *infer)
        check_hf(session, base_url, model, classify)

    fuzz()


def test_protocol_bodies_never_fail_the_server(service: Service) -> None:
    fuzz_protocol_bodies(service.base_url, service.get("/").json()["model"])
