"""The Open Inference Protocol's (KServe V2) REST wire format for an image classifier.

Only the wire format, no routes (:mod:`imagetagger.api.routers.open_inference`), so it
can be tested byte for byte without an app: here the model's interface (names,
metadata), the errors and the answers; requests are parsed by
:mod:`imagetagger.protocols.open_inference_requests`.

The model takes one ``BYTES`` input of encoded images (shape ``[N]`` or ``[N, 1]``):
base64 strings in JSON (JSON strings must be UTF-8, so ``tritonclient`` can only send
an encoded image in JSON as text: base64 is the one unambiguous reading), or the raw
bytes with Triton's binary tensor data extension (each element a 4-byte little-endian
length and the bytes, after the JSON header whose length
``Inference-Header-Content-Length`` gives). It gives one ``FP32`` ``[N, 1000]`` output
of probabilities, or with Triton's classification extension (``parameters.
classification: K`` on the requested output) the top K as ``BYTES`` ``[N, K]``
strings ``"<score>:<index>:<label>"`` (Triton's ``std::to_string`` of the score:
six decimals). Outputs are JSON or binary as the request asks, as Triton renders them.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from imagetagger.labels import LABELS, NUM_CLASSES
from imagetagger.protocols.json_error import JsonError
from imagetagger.schemas import MAX_BATCH_URLS

INPUT_NAME = "IMAGE"
OUTPUT_NAME = "PROBABILITIES"
MODEL_VERSION = "1"
#: What ``platform`` the model metadata names (the field is free-form in the protocol).
PLATFORM = "imagetagger"
#: Images per request: the contract's batch limit.
MAX_IMAGES = MAX_BATCH_URLS
EXTENSIONS = ("binary_tensor_data", "classification")
HEADER_LENGTH = "Inference-Header-Content-Length"
BINARY_CONTENT_TYPE = "application/octet-stream"
JSON_CONTENT_TYPE = "application/json"
_LENGTH = struct.Struct("<I")


@dataclass(frozen=True)
class RequestedOutput:
    """One output the client asked for: binary or JSON, probabilities or the top K."""

    name: str
    binary: bool
    classification: int = 0  # 0: the probabilities themselves


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    images: list[bytes]
    outputs: tuple[RequestedOutput, ...]


def unknown_model(model: str, version: str | None = None) -> JsonError:
    """Triton's 404 for a model (or a version of it) this server does not serve."""
    which = f"'{model}'" if version is None else f"'{model}' version {version}"
    return JsonError(f"Request for unknown model: {which} is not found", 404)


def server_metadata(version: str) -> dict[str, Any]:
    return {"name": "imagetagger", "version": version, "extensions": list(EXTENSIONS)}


def model_metadata(model: str) -> dict[str, Any]:
    return {
        "name": model,
        "versions": [MODEL_VERSION],
        "platform": PLATFORM,
        "inputs": [{"name": INPUT_NAME, "datatype": "BYTES", "shape": [-1]}],
        "outputs": [{"name": OUTPUT_NAME, "datatype": "FP32", "shape": [-1, NUM_CLASSES]}],
    }


def render_infer_response(
    model: str, request: InferRequest, probabilities: np.ndarray
) -> tuple[bytes, dict[str, str]]:
    """The response body and its headers for ``probabilities`` ((N, 1000) float32)."""
    response: dict[str, Any] = {}
    if request.id is not None:
        response["id"] = request.id
    response["model_name"] = model
    response["model_version"] = MODEL_VERSION
    outputs: list[dict[str, Any]] = []
    buffers: list[bytes] = []
    for requested in request.outputs:
        output: dict[str, Any] = {"name": requested.name}
        if requested.classification:
            top = classifications(probabilities, requested.classification)
            output["datatype"] = "BYTES"
            output["shape"] = [len(top), len(top[0])]
            raw = serialize_bytes(s.encode() for row in top for s in row)
            data: list[Any] = [s for row in top for s in row]
        else:
            output["datatype"] = "FP32"
            output["shape"] = list(probabilities.shape)
            raw = probabilities.astype("<f4").tobytes()
            data = probabilities.astype(np.float32).ravel().tolist()
        if requested.binary:
            output["parameters"] = {"binary_data_size": len(raw)}
            buffers.append(raw)
        else:
            output["data"] = data
        outputs.append(output)
    response["outputs"] = outputs
    header = json.dumps(response, separators=(",", ":")).encode()
    if buffers:
        headers = {"Content-Type": BINARY_CONTENT_TYPE, HEADER_LENGTH: str(len(header))}
        return header + b"".join(buffers), headers
    return header, {"Content-Type": JSON_CONTENT_TYPE}


def classifications(probabilities: np.ndarray, count: int) -> list[list[str]]:
    """Each row's top ``count`` as Triton writes them: ``"0.614428:285:Egyptian_cat"``.

    Ties go to the lower index (Triton's sort leaves their order unspecified).
    """
    count = min(count, probabilities.shape[1])
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :count]
    return [
        [f"{float(row[i]):f}:{i}:{LABELS[i]}" for i in indices]
        for row, indices in zip(probabilities, order.tolist(), strict=True)
    ]


def serialize_bytes(elements: Iterable[bytes]) -> bytes:
    """A BYTES tensor's binary form: each element's 4-byte little-endian length, then it."""
    return b"".join(_LENGTH.pack(len(element)) + element for element in elements)


def deserialize_bytes(raw: bytes | memoryview) -> list[bytes]:
    """The elements of a BYTES tensor's binary form; ValueError if it is malformed."""
    elements: list[bytes] = []
    offset = 0
    while offset < len(raw):
        if offset + _LENGTH.size > len(raw):
            raise ValueError("a length prefix is cut short")
        (length,) = _LENGTH.unpack_from(raw, offset)
        offset += _LENGTH.size
        if offset + length > len(raw):
            raise ValueError("an element is shorter than its length prefix says")
        elements.append(bytes(raw[offset : offset + length]))
        offset += length
    return elements
