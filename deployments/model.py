"""ModelDeployment: one loaded classifier per replica.

The ingress sends the images of its concurrent requests in one call
(:meth:`ModelDeployment.infer_many`) and gets their probabilities back, with the
model's identity (the response cache's key). With ``max_batch_size`` 1 (what
``serve_config.yaml`` sets for LiteRT on CPU) each image runs straight away on a worker
thread with its own interpreter. With a larger ``max_batch_size`` (the setting's default,
16; TensorFlow, GPUs) ``@serve.batch`` gathers the images of all calls into batches of up
to that size (or whatever arrived within ``batch_wait_timeout_s``). Either way
inference runs off the event loop.

With tracing on, the ingress passes each image's trace context; each image gets a
``ModelDeployment.infer`` span in its own request's trace (group size, its index, its
invoke time, runtime, precision, the model's identity).
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from ray import serve

from deployments.metrics import model_metrics
from imagetagger import tracing
from imagetagger.models.runtimes import RuntimeOptions, load_model, model_identity
from imagetagger.models.sources import weights_fingerprint
from imagetagger.settings import ModelSettings

logger = logging.getLogger("ray.serve")

DEFAULT_SETTINGS = ModelSettings()
# TensorFlow: two batches in flight; while one runs in its worker thread, the next one
# forms and can start on the other core. Measured on 2 cores with single-threaded
# TensorFlow (intra_op_threads 1), this beats one batch on two TensorFlow threads by
# ~10%; Serve needs max_ongoing_requests >= max_batch_size * CONCURRENT_BATCHES to use
# both. LiteRT runs as many images at once as it has interpreters.
CONCURRENT_BATCHES = 2
# A health probe re-runs the model only when no inference succeeded recently.
HEALTH_PROBE_INTERVAL_S = 30.0


@serve.deployment(name="ModelDeployment")
class ModelDeployment:
    def __init__(
        self, model_name: str, options: RuntimeOptions, weights_path: str | None = None
    ) -> None:
        self._classifier = load_model(model_name, options, weights_path=weights_path)
        self.identity = model_identity(
            self._classifier, options, weights_fingerprint(self._classifier.spec, weights_path)
        )
        self._input_shape = (self._classifier.spec.input_size,) * 2 + (3,)
        workers = options.interpreters if options.runtime == "litert" else CONCURRENT_BATCHES
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="inference")
        self._batched = DEFAULT_SETTINGS.max_batch_size > 1
        self._last_success = time.monotonic()
        self._metrics = model_metrics()
        self._span_attributes = {
            "imagetagger.model.runtime": options.runtime,
            "imagetagger.model.precision": options.precision,
            "imagetagger.model.identity": self.identity,
        }
        tracing.configure("ModelDeployment")  # on when OTEL_EXPORTER_OTLP_*ENDPOINT is set
        self._warmed_up_to = 1  # loading ran batch 1
        logger.info("Loaded %s on %s", model_name, options)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Apply batch settings live; Serve calls this at start and on config change."""
        settings = ModelSettings.model_validate(user_config or {})
        self._warm_up_to(settings.max_batch_size)
        self._batched = settings.max_batch_size > 1
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

    async def model_identity(self) -> str:
        """This replica's model identity: it answers once the model is loaded and warm."""
        return self.identity

    async def infer_many(
        self, images: np.ndarray, contexts: list[tracing.Carrier | None] | None = None
    ) -> tuple[str, np.ndarray]:
        """This model's identity and the probabilities (N, 1000) of N model-ready images
        (``contexts``: each image's trace context, when tracing is on)."""
        if images.ndim != 4 or images.shape[1:] != self._input_shape or images.dtype != np.uint8:
            raise ValueError(
                f"expected uint8 (N, {self._input_shape}), got {images.dtype} {images.shape}"
            )
        if contexts is not None and tracing.enabled():
            return await self._infer_traced(images, contexts)
        if self._batched:
            rows = await asyncio.gather(*(self.infer_batch(image) for image in images))
        else:
            rows = await asyncio.gather(*(self._infer([image]) for image in images))
            rows = [row[0] for row in rows]
        return self.identity, np.stack(rows)

    async def _infer_traced(
        self, images: np.ndarray, contexts: list[tracing.Carrier | None]
    ) -> tuple[str, np.ndarray]:
        attributes = {**self._span_attributes, "imagetagger.group.size": len(images)}
        spans = tracing.start_member_spans("ModelDeployment.infer", contexts, attributes)
        try:
            rows = await asyncio.gather(*(self._timed_row(image) for image in images))
        except BaseException as exc:
            tracing.end_member_spans(spans, exc)
            raise
        for span, (_, seconds) in zip(spans, rows, strict=False):
            # with batching on, the wait for the batch to form is included
            span.set_attribute("imagetagger.model.invoke_ms", round(seconds * 1000, 3))
        tracing.end_member_spans(spans)
        return self.identity, np.stack([row for row, _ in rows])

    async def _timed_row(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        started = time.perf_counter()
        row = await self.infer_batch(image) if self._batched else (await self._infer([image]))[0]
        return row, time.perf_counter() - started

    @serve.batch(
        max_batch_size=DEFAULT_SETTINGS.max_batch_size,
        batch_wait_timeout_s=DEFAULT_SETTINGS.batch_wait_timeout_s,
        max_concurrent_batches=CONCURRENT_BATCHES,
    )
    async def infer_batch(self, images: list[np.ndarray]) -> list[np.ndarray]:
        return list(await self._infer(images))

    async def _infer(self, images: list[np.ndarray]) -> np.ndarray:
        batch = images[0][np.newaxis] if len(images) == 1 else np.stack(images)
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        probabilities = await loop.run_in_executor(
            self._executor, self._classifier.predict_proba, batch
        )
        self._metrics.inference_seconds.observe(time.perf_counter() - started)
        self._metrics.batch_size.observe(len(images))
        self._last_success = time.monotonic()
        return probabilities

    async def check_health(self) -> None:
        """Fail when the model can no longer infer (Serve then replaces the replica)."""
        if time.monotonic() - self._last_success < HEALTH_PROBE_INTERVAL_S:
            return
        probe = np.zeros((1, *self._input_shape), dtype=np.uint8)
        loop = asyncio.get_running_loop()
        probabilities = await loop.run_in_executor(
            self._executor, self._classifier.predict_proba, probe
        )
        if probabilities.shape != (1, 1000) or not np.isfinite(probabilities).all():
            raise RuntimeError(f"model output is unusable: shape {probabilities.shape}")
        self._last_success = time.monotonic()
