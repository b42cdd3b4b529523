"""The app over an in-process core with a fake model, for the protocols' tests (no Ray).

The fake model tells the two test photos apart by their colour (the cat's crop is
bluer than the coffee's), so a batch shows that answers keep their order; the decoder
and cropper are the real ones (:class:`imagetagger.api.local_backend.LocalBackend`).
``serve`` runs the app on a loopback port in a thread, for the official clients.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import uvicorn
from fastapi import FastAPI

from imagetagger.api.access import Access
from imagetagger.api.app import local_api
from imagetagger.api.core import RequestCore
from imagetagger.api.local_backend import LocalBackend
from imagetagger.protocols import open_inference as oip
from imagetagger.settings import IngressSettings

MODEL = "efficientnet_lite2"
DATA = Path(__file__).parent / "data"
CHELSEA = (DATA / "chelsea.jpg").read_bytes()
COFFEE = (DATA / "coffee.jpg").read_bytes()
B64_CAT = base64.b64encode(CHELSEA).decode()
B64_CUP = base64.b64encode(COFFEE).decode()


def _answer(top: dict[int, float]) -> np.ndarray:
    rest = (1.0 - sum(top.values())) / (1000 - len(top))
    probabilities = np.full(1000, rest, np.float32)
    for index, p in top.items():
        probabilities[index] = p
    return probabilities


#: The fake model's answers: Egyptian_cat, tabby, tiger_cat; espresso, cup, coffee_mug.
CAT = _answer({285: 0.625, 281: 0.25, 282: 0.0625})
CUP = _answer({967: 0.5, 968: 0.25, 504: 0.125})


def fake_model(pixels: np.ndarray) -> np.ndarray:
    """(N, S, S, 3) crops -> (N, 1000): CAT for a bluish crop, else CUP."""
    return np.stack([CAT if crop[..., 2].mean() > 60 else CUP for crop in pixels])


def make_core(settings: IngressSettings | None = None) -> RequestCore:
    return RequestCore(LocalBackend(MODEL, fake_model, "fake-model"), MODEL, settings)


def make_app(settings: IngressSettings | None = None, access: Access | None = None) -> FastAPI:
    return local_api(make_core(settings), access)


@contextlib.contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """``app`` on 127.0.0.1 in a thread; yields ``host:port``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


# Open Inference Protocol requests: the IMAGE input as base64 JSON, or binary tensor data.


def json_request(*images: str, shape: list[int] | None = None, **extra) -> dict:
    tensor = {"name": "IMAGE", "datatype": "BYTES", "shape": shape or [len(images)]}
    return {"inputs": [{**tensor, "data": list(images)}], **extra}


def binary_request(*images: bytes, outputs: list | None = None) -> tuple[bytes, dict]:
    raw = oip.serialize_bytes(images)
    tensor = {"name": "IMAGE", "datatype": "BYTES", "shape": [len(images)]}
    header: dict = {"inputs": [{**tensor, "parameters": {"binary_data_size": len(raw)}}]}
    if outputs is not None:
        header["outputs"] = outputs
    head = json.dumps(header).encode()
    return head + raw, {oip.HEADER_LENGTH: str(len(head))}
