"""ModelDeployment: one loaded classifier per replica, fed by ``@serve.batch``.

Requests arrive one image each; Serve gathers them into batches of up to
``max_batch_size`` (or whatever arrived within ``batch_wait_timeout_s``), the batch
runs in a worker thread (the event loop keeps accepting requests), and each caller
gets back only the labels it asked for.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import numpy as np
from ray import serve

from deployments.metrics import model_metrics
from imagetagger.errors import ImageTaggerError
from imagetagger.predictions import select_predictions
from imagetagger.settings import ModelSettings
from imagetagger.tfconfig import configure_tensorflow

logger = logging.getLogger("ray.serve")

DEFAULT_SETTINGS = ModelSettings()
# Two batches in flight: while one runs in its worker thread, the next one forms and
# can start on the other core. Measured on 2 cores with single-threaded TensorFlow
# (intra_op_threads 1), this beats one batch on two TensorFlow threads by ~10%; Serve
# needs max_ongoing_requests >= max_batch_size * CONCURRENT_BATCHES to use both.
CONCURRENT_BATCHES = 2
# A health probe re-runs the model only when no batch succeeded recently.
HEALTH_PROBE_INTERVAL_S = 30.0


@serve.deployment(name="ModelDeployment")
class ModelDeployment:
    def __init__(
        self,
        model_name: str,
        weights_path: str | None = None,
        compute_dtype: str = "float32",
        intra_op_threads: int = 0,
        inter_op_threads: int = 0,
    ) -> None:
        gpus = configure_tensorflow(
            intra_op_threads=intra_op_threads, inter_op_threads=inter_op_threads
        )
        from imagetagger.models.loader import load_classifier  # TensorFlow after config

        self._classifier = load_classifier(
            model_name, weights_path=weights_path, compute_dtype=compute_dtype
        )
        self._input_shape = (self._classifier.spec.input_size,) * 2 + (3,)
        self._last_success = time.monotonic()
        self._metrics = model_metrics()
        self._warmed_up_to = 1  # load_classifier ran batch 1
        logger.info("Loaded %s (%s) on %s", model_name, compute_dtype, gpus or "CPU")

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Apply batch settings live; Serve calls this at start and on config change."""
        settings = ModelSettings.model_validate(user_config or {})
        self._warm_up_to(settings.max_batch_size)
        self.infer_batch.set_max_batch_size(settings.max_batch_size)
        self.infer_batch.set_batch_wait_timeout_s(settings.batch_wait_timeout_s)

    def _warm_up_to(self, max_batch_size: int) -> None:
        """Run every batch size once, so no request pays a first-call cost.

        TensorFlow sets up kernels per input shape: the first call at a new batch size
        costs ~100 ms more on CPU. Serve calls ``reconfigure`` before the replica is
        reported healthy, so this happens before traffic arrives.
        """
        for size in range(self._warmed_up_to + 1, max_batch_size + 1):
            self._classifier.warmup(size)
        self._warmed_up_to = max(self._warmed_up_to, max_batch_size)

    async def predict(
        self,
        image: np.ndarray | ImageTaggerError,
        top: int | None = None,
        minconf: float | None = None,
    ) -> list[dict[str, Any]] | ImageTaggerError:
        """Labels for one model-ready image, filtered as the caller asked.

        A Downloader error value passes through untouched, for the ingress to answer.
        """
        if isinstance(image, ImageTaggerError):
            return image
        if image.shape != self._input_shape or image.dtype != np.uint8:
            raise ValueError(f"expected uint8 {self._input_shape}, got {image.dtype} {image.shape}")
        probabilities = await self.infer_batch(image)
        return select_predictions(probabilities, top=top, minconf=minconf)

    @serve.batch(
        max_batch_size=DEFAULT_SETTINGS.max_batch_size,
        batch_wait_timeout_s=DEFAULT_SETTINGS.batch_wait_timeout_s,
        max_concurrent_batches=CONCURRENT_BATCHES,
    )
    async def infer_batch(self, images: list[np.ndarray]) -> list[np.ndarray]:
        batch = np.stack(images)
        started = time.perf_counter()
        probabilities = await asyncio.to_thread(self._classifier.predict_proba, batch)
        self._metrics.inference_seconds.observe(time.perf_counter() - started)
        self._metrics.batch_size.observe(len(images))
        self._last_success = time.monotonic()
        return list(probabilities)

    async def check_health(self) -> None:
        """Fail when the model can no longer infer (Serve then replaces the replica)."""
        if time.monotonic() - self._last_success < HEALTH_PROBE_INTERVAL_S:
            return
        probe = np.zeros((1, *self._input_shape), dtype=np.uint8)
        probabilities = await asyncio.to_thread(self._classifier.predict_proba, probe)
        if probabilities.shape != (1, 1000) or not np.isfinite(probabilities).all():
            raise RuntimeError(f"model output is unusable: shape {probabilities.shape}")
        self._last_success = time.monotonic()
