"""Parsing an Open Inference Protocol (KServe V2 REST) infer request for the image model.

The request side of :mod:`imagetagger.protocols.open_inference` (which holds the
model's interface, the errors and the answers): the body's ``Content-Encoding``, the
JSON header (its length from ``Inference-Header-Content-Length`` when binary tensor
data follow), the one ``BYTES`` input of encoded images (base64 strings in JSON, or
the binary elements) and the requested outputs. Every refusal is a
:class:`~imagetagger.protocols.json_error.JsonError` that says why.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

from imagetagger.errors import ImageTooLarge
from imagetagger.label_apis.common import decode_base64
from imagetagger.protocols.open_inference import (
    HEADER_LENGTH,
    INPUT_NAME,
    MAX_IMAGES,
    OUTPUT_NAME,
    InferRequest,
    JsonError,
    RequestedOutput,
    deserialize_bytes,
)


def decode_content(body: bytes, encoding: str | None, limit: int) -> bytes:
    """The body without its ``Content-Encoding`` (tritonclient's gzip or deflate),
    decompressed to at most ``limit`` bytes (413 beyond: no decompression bomb)."""
    name = (encoding or "identity").strip().lower()
    if name == "identity":
        return body
    if name not in ("gzip", "deflate"):
        raise JsonError(f"Unsupported Content-Encoding '{encoding}'")
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS if name == "gzip" else zlib.MAX_WBITS)
    try:
        data = decompressor.decompress(body, limit + 1)
    except zlib.error as exc:
        raise JsonError(f"Unable to decompress the {name} body: {exc}") from None
    if len(data) > limit:
        raise JsonError.of(ImageTooLarge("The request is larger than this service accepts."))
    if not decompressor.eof:
        raise JsonError(f"The {name} body is truncated")
    return data


def parse_infer_request(
    body: bytes, header_length: str | None, *, model: str, max_image_bytes: int
) -> InferRequest:
    """The images and the requested outputs of an infer request, or JsonError."""
    json_length = _json_length(header_length, len(body))
    try:
        request = json.loads(body[:json_length])
    except (ValueError, UnicodeDecodeError) as exc:
        raise JsonError(f"Unable to parse the request JSON: {exc}") from None
    if not isinstance(request, dict):
        raise JsonError("The request must be a JSON object")
    request_id = request.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise JsonError("Unable to parse 'id': it must be a string")
    parameters = _object(request.get("parameters"), "parameters")
    binary_output = _bool(parameters.get("binary_data_output", False), "binary_data_output")
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1:
        raise JsonError(
            f"Model '{model}' takes exactly one input, '{INPUT_NAME}' (BYTES: encoded images)"
        )
    images = _images(inputs[0], memoryview(body)[json_length:], max_image_bytes)
    outputs = _requested_outputs(request.get("outputs"), binary_output, model)
    return InferRequest(request_id, images, outputs)


def _json_length(header: str | None, body_length: int) -> int:
    if header is None:
        return body_length
    try:
        length = int(header.strip())
    except ValueError:
        raise JsonError(f"Unable to parse {HEADER_LENGTH}, got: {header}") from None
    if not 0 <= length <= body_length:
        raise JsonError(f"{HEADER_LENGTH} must be in the range [0, {body_length}], got: {header}")
    return length


def _images(tensor: Any, binary: memoryview, max_image_bytes: int) -> list[bytes]:
    if not isinstance(tensor, dict):
        raise JsonError("Unable to parse 'inputs': each input must be a JSON object")
    name = tensor.get("name")
    if not isinstance(name, str):
        raise JsonError("Unable to parse 'name' of the input")
    datatype = tensor.get("datatype")
    if datatype != "BYTES":
        raise JsonError(
            f"Input '{name}' has datatype {json.dumps(datatype)}; "
            "this model takes BYTES (encoded images)"
        )
    count = _image_count(name, tensor.get("shape"))
    parameters = _object(tensor.get("parameters"), f"parameters' of input '{name}")
    size = parameters.get("binary_data_size")
    if size is not None and "data" in tensor:
        raise JsonError(f"Input '{name}' must set only one of 'data' and 'binary_data_size'")
    if size is not None:
        if not _is_int(size) or size < 0:
            raise JsonError(f"Unable to parse 'binary_data_size' of input '{name}'")
        if size > len(binary):
            raise JsonError(
                f"Unexpected size for input '{name}', expecting {size - len(binary)} more bytes"
            )
        try:
            images = deserialize_bytes(binary[:size])
        except ValueError as exc:
            raise JsonError(f"Input '{name}' is not a BYTES tensor: {exc}") from None
        binary = binary[size:]
    else:
        images = [_base64_image(name, i, text) for i, text in enumerate(_flat(name, tensor))]
    if len(binary):
        raise JsonError("Unexpected additional input data after the input's binary data")
    if len(images) != count:
        raise JsonError(f"Input '{name}' holds {len(images)} elements; its shape says {count}")
    for index, image in enumerate(images):
        if len(image) > max_image_bytes:
            raise JsonError.of(ImageTooLarge(), f"image {index}: ")
    return images


def _image_count(name: str, shape: Any) -> int:
    if (
        not isinstance(shape, list)
        or not all(_is_int(d) for d in shape)
        or len(shape) not in (1, 2)
        or (len(shape) == 2 and shape[1] != 1)
    ):
        raise JsonError(
            f"Input '{name}' has shape {json.dumps(shape)}; this model takes [N] or [N, 1]"
        )
    if not 1 <= shape[0] <= MAX_IMAGES:
        raise JsonError(f"Input '{name}' must hold 1 to {MAX_IMAGES} images, not {shape[0]}")
    return shape[0]


def _flat(name: str, tensor: dict[str, Any]) -> list[Any]:
    """The ``data`` of a JSON input, flat ([a, b] and [[a], [b]] alike)."""
    data = tensor.get("data")
    if not isinstance(data, list):
        raise JsonError(f"Input '{name}' needs 'data' or 'binary_data_size'")
    return [x for item in data for x in (item if isinstance(item, list) else [item])]


def _base64_image(name: str, index: int, text: Any) -> bytes:
    if not isinstance(text, str):
        raise JsonError(f"Input '{name}' element {index} must be a base64 string")
    try:
        return decode_base64(text)
    except ValueError:
        raise JsonError(f"Input '{name}' element {index} is not base64") from None


def _requested_outputs(
    outputs: Any, binary_default: bool, model: str
) -> tuple[RequestedOutput, ...]:
    if outputs is None or outputs == []:
        return (RequestedOutput(OUTPUT_NAME, binary_default),)
    if not isinstance(outputs, list):
        raise JsonError("Unable to parse 'outputs': it must be a list")
    requested: list[RequestedOutput] = []
    for output in outputs:
        name = output.get("name") if isinstance(output, dict) else None
        if name != OUTPUT_NAME:
            raise JsonError(
                f"Unexpected inference output {json.dumps(name)} for model '{model}' "
                f"(its output is '{OUTPUT_NAME}')"
            )
        parameters = _object(output.get("parameters"), f"parameters' of output '{name}")
        binary = _bool(parameters.get("binary_data", binary_default), "binary_data")
        classes = parameters.get("classification", 0)
        if not _is_int(classes) or classes < 0:
            raise JsonError("Unable to parse 'classification': a count of classes (0 or more)")
        requested.append(RequestedOutput(name, binary, classes))
    if len(requested) > 1:
        raise JsonError(f"Output '{OUTPUT_NAME}' is requested more than once")
    return tuple(requested)


def _object(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise JsonError(f"Unable to parse '{what}': it must be a JSON object")
    return value


def _bool(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise JsonError(f"Unable to parse '{what}': it must be true or false")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
