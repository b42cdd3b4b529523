"""The whole HTTP app served in-process, without Ray: a request core over the library.

The core gets the real fetcher (its SSRF guard and limits) and the real decoder
(:class:`imagetagger.api.local_backend.LocalBackend`); the model is a fake that answers
one fixed vector, or a real classifier where a test asks for one (``models`` marker).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
from fastapi.testclient import TestClient

from imagetagger.api.access import Access
from imagetagger.api.app import local_api
from imagetagger.api.core import RequestCore
from imagetagger.api.local_backend import LocalBackend
from imagetagger.labels import LABELS, NUM_CLASSES
from imagetagger.settings import DownloaderSettings, IngressSettings

MODEL = "efficientnet_lite2"
FAKE_IDENTITY = "fake-model"


def cat_probabilities() -> np.ndarray:
    """A photo of a cat as the model might see it: three cat classes lead, lynx next."""
    probs = np.zeros(NUM_CLASSES, dtype=np.float32)
    for label, value in (("Egyptian_cat", 0.614), ("tiger_cat", 0.142), ("tabby", 0.095)):
        probs[LABELS.index(label)] = value
    probs[LABELS.index("lynx")] = 0.012
    rest = probs == 0
    probs[rest] = (1 - probs.sum()) / rest.sum()
    return probs


CAT = cat_probabilities()


def fake_model(images: np.ndarray) -> np.ndarray:
    """Every crop gets :data:`CAT`."""
    return np.tile(CAT, (len(images), 1))


@contextmanager
def serve_in_process(
    predict_proba: Callable[[np.ndarray], np.ndarray] = fake_model,
    *,
    identity: str = FAKE_IDENTITY,
    settings: IngressSettings | None = None,
    access: Access | None = None,
    allowed_networks: tuple[str, ...] = ("127.0.0.1/32",),
) -> Iterator[TestClient]:
    """A client of the app over a fresh core; URLs on 127.0.0.1 may be fetched."""
    backend = LocalBackend(
        MODEL,
        predict_proba,
        identity,
        DownloaderSettings(allowed_networks=list(allowed_networks), timeout_s=5.0),
    )
    core = RequestCore(backend, MODEL, settings)
    with TestClient(local_api(core, access), raise_server_exceptions=False) as client:
        yield client
        client.portal.call(backend.close)
