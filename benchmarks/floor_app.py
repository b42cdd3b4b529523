"""Ray's floor: the service's three deployments with no work in them.

The same shape as ``deployments.app:build_app`` (an ingress ``ImageTagger`` that awaits
the ``Downloader``, then passes its answer to the ``ModelDeployment``), the same hops,
the same serving mode and deployment options (the bench derives its Serve config from
``serve_config.yaml``: :func:`benchmarks.launch.floor_config`), but the Downloader
returns a ready S x S x 3 uint8 array without fetching anything and the model returns
1000 zero-cost float32 probabilities. What the floor costs per request, and in memory,
is Ray's part of the service; the rest is ours.

``user_config`` of the service's deployments is accepted and ignored.
"""

# No `from __future__ import annotations`: FastAPI resolves the route signatures of
# the Serve-wrapped class at import time.

from typing import Any

import numpy as np
from fastapi import FastAPI
from ray import serve
from ray.serve import Application
from ray.serve.handle import DeploymentHandle

DEFAULT_INPUT_SIZE = 260  # efficientnet_lite2's crop
NUM_CLASSES = 1000

app_api = FastAPI(title="Ray floor")


@serve.deployment(name="Downloader")
class Downloader:
    def __init__(self, input_size: int) -> None:
        self._image = np.full((input_size, input_size, 3), 127, dtype=np.uint8)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """The service's Downloader settings: accepted, unused."""

    async def fetch(self, url: str) -> np.ndarray:
        return self._image


@serve.deployment(name="ModelDeployment")
class ModelDeployment:
    def __init__(self) -> None:
        self._probabilities = np.full(NUM_CLASSES, 1.0 / NUM_CLASSES, dtype=np.float32)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """The service's model settings: accepted, unused."""

    async def predict(self, image: np.ndarray) -> np.ndarray:
        return self._probabilities


@serve.deployment(name="ImageTagger")
@serve.ingress(app_api)
class ImageTagger:
    def __init__(self, downloader: DeploymentHandle, model: DeploymentHandle) -> None:
        self._downloader = downloader
        self._model = model

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """The service's ingress settings: accepted, unused."""

    @app_api.get("/")
    async def info(self) -> dict[str, str]:
        return {"description": "Ray floor: the service's deployments with no work in them"}

    @app_api.get("/predictions")
    async def predictions(self, url: str, top: int = 1) -> dict[str, Any]:
        image = await self._downloader.fetch.remote(url)
        probabilities = await self._model.predict.remote(image)
        return {
            "url": url,
            "predictions": [{"label": "floor", "confidence": float(probabilities[0])}],
        }


def build_app(args: dict[str, Any] | None = None) -> Application:
    """``args``: ``input_size``, the side of the array the Downloader passes on."""
    input_size = int((args or {}).get("input_size", DEFAULT_INPUT_SIZE))
    return ImageTagger.bind(Downloader.bind(input_size), ModelDeployment.bind())


app = build_app()
