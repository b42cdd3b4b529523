"""Hugging Face's ``image-classification`` task's wire format (the Inference API's).

What ``huggingface_hub.InferenceClient(model=URL).image_classification(image)`` sends:
the raw image as the body when no parameters are given (with ``Content-Type:
application/json`` for raw bytes, as the client labels a body it has no MIME type
for, or the file's guessed type), else ``{"inputs": "<base64>", "parameters":
{"top_k": N, "function_to_apply": ...}}``. So a body is told apart by its first
byte, never by its Content-Type: JSON starts with ``{``, which no image format does.

The answer is ``[{"label", "score"}, ...]`` best first, 5 by default (the pipeline's
default); errors are ``{"error": "..."}`` with the status. Labels are the readable
ImageNet names, the Keras name with spaces (``Egyptian cat``, ``tabby``): the first
of the WordNet synonyms that Hugging Face's ImageNet models (``id2label``) show
(``tabby, tabby cat``), in the words people read, where the Keras name's underscores
are a file key's.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from imagetagger.errors import ImageTooLarge
from imagetagger.label_apis.common import decode_base64
from imagetagger.labels import LABELS, NUM_CLASSES
from imagetagger.protocols.json_error import JsonError

DEFAULT_TOP_K = 5
FUNCTIONS = ("softmax", "sigmoid", "none")
#: Each class's name as this protocol shows it.
READABLE_LABELS: tuple[str, ...] = tuple(label.replace("_", " ") for label in LABELS)
# log(0) has no JSON number: a probability is at least the smallest normal float32.
_TINY = np.finfo(np.float32).tiny
_JSON_START = re.compile(rb"[ \t\r\n]*\{")


@dataclass(frozen=True)
class ClassifyRequest:
    image: bytes
    top_k: int = DEFAULT_TOP_K
    function_to_apply: str = "softmax"


def unknown_model(model: str) -> JsonError:
    return JsonError(f"Model {model} does not exist", 404)


def max_body_bytes(max_image_bytes: int) -> int:
    """The largest body worth reading: the largest image as base64 in JSON, plus room."""
    return 4 * math.ceil(max_image_bytes / 3) + 64 * 2**10


def parse_request(body: bytes, *, max_image_bytes: int) -> ClassifyRequest:
    """The image and the parameters of a request: a raw image body or the JSON form."""
    if not _JSON_START.match(body):
        if len(body) > max_image_bytes:
            raise JsonError.of(ImageTooLarge())
        return ClassifyRequest(body)
    try:
        request = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise JsonError(f"Malformed JSON body: {exc}") from None
    if not isinstance(request, dict):
        raise JsonError("The body must be an image or a JSON object")
    inputs = request.get("inputs")
    if not isinstance(inputs, str):
        raise JsonError("'inputs' must be the image as a base64 string")
    try:
        image = decode_base64(inputs)
    except ValueError:
        raise JsonError("'inputs' is not base64") from None
    if len(image) > max_image_bytes:
        raise JsonError.of(ImageTooLarge())
    parameters = request.get("parameters")
    if parameters is None:
        parameters = {}
    if not isinstance(parameters, dict):
        raise JsonError("'parameters' must be a JSON object")
    return ClassifyRequest(
        image, _top_k(parameters.get("top_k")), _function(parameters.get("function_to_apply"))
    )


def render(probabilities: np.ndarray, top_k: int, function_to_apply: str) -> list[dict[str, Any]]:
    """The top ``top_k`` classes, best first (ties: the lower index first).

    The model gives probabilities, not logits; the logits it stands for are taken as
    their logarithms (logits are defined up to a constant; these are the ones whose
    softmax is the probabilities exactly), so ``none`` gives log-probabilities and
    ``sigmoid`` ``p / (1 + p)``. All three keep the same order.
    """
    probabilities = np.asarray(probabilities, dtype=np.float32)
    if function_to_apply == "none":
        scores = np.log(np.maximum(probabilities, _TINY))
    elif function_to_apply == "sigmoid":
        scores = probabilities / (1 + probabilities)
    else:
        scores = probabilities
    order = np.argsort(-probabilities, kind="stable")[:top_k]
    return [{"label": READABLE_LABELS[i], "score": float(scores[i])} for i in order.tolist()]


def _top_k(value: Any) -> int:
    if value is None:
        return DEFAULT_TOP_K
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise JsonError("'top_k' must be an integer of 1 or more")
    return min(value, NUM_CLASSES)  # as the pipeline does: at most the model's labels


def _function(value: Any) -> str:
    if value is None:
        return "softmax"
    if value not in FUNCTIONS:
        raise JsonError(f"'function_to_apply' must be one of {', '.join(FUNCTIONS)}")
    return value
