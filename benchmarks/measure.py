"""What a benchmark measures on a running server, and on the bare pipeline in-process.

For a server: closed-loop load at each concurrency after a discarded warm-up; req/s,
latency percentiles and errors (:mod:`benchmarks.load`); CPU milliseconds per answered
request of each of its processes, by role, and of the load generator and the photo
server beside it; PSS summed over its processes after each level (the peak is kept).
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks.launch import RunningServer
from benchmarks.load import ImageURLs, format_result, prediction_url, run_load
from benchmarks.model_throughput import concurrent_images_per_s, time_model, time_prepare
from benchmarks.photos import Photo
from benchmarks.procs import (
    cpu_ms_per_request,
    cpu_seconds,
    log_tail,
    memory_snapshot,
    process_cpu_seconds,
)
from imagetagger.models.runtimes import RuntimeOptions
from imagetagger.models.specs import get_spec

WARM_UP_REQUESTS = 12


@dataclass(frozen=True)
class LoadSettings:
    concurrencies: tuple[int, ...]
    duration_s: float
    warmup_s: float
    top: int


def warm_up(server: RunningServer, images: ImageURLs, top: int, requests: int) -> None:
    """``requests`` requests at c=1 must all succeed before load starts (first calls
    pay one-time costs: graph tracing, connection pools)."""
    result = asyncio.run(
        run_load(server.base_url, images, concurrency=1, requests=requests, top=top)
    )
    if result.errors or not result.ok:
        probe = next(iter(images)) if isinstance(images, Sequence) else "(unique URL)"
        raise RuntimeError(
            f"{server.name} warm-up failed: {dict(result.outcomes)} "
            f"(e.g. {prediction_url(server.base_url, probe, top)})\n{log_tail(server.log_path)}"
        )


def _own_cpu_s() -> float:
    times = os.times()
    return times.user + times.system


def _pid_cpu_s(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        return process_cpu_seconds(pid)
    except OSError:
        return 0.0


def measure_level(
    server: RunningServer,
    images: ImageURLs,
    concurrency: int,
    settings: LoadSettings,
    *,
    photo_server_pid: int | None = None,
    label: str = "",
) -> dict[str, Any]:
    """One load level (after its warm-up): throughput, latency, CPU per request."""
    if settings.warmup_s > 0:
        asyncio.run(
            run_load(
                server.base_url,
                images,
                concurrency=concurrency,
                duration_s=settings.warmup_s,
                top=settings.top,
            )
        )
    cpu_before, own_before = cpu_seconds(server.token), _own_cpu_s()
    photos_before = _pid_cpu_s(photo_server_pid)
    result = asyncio.run(
        run_load(
            server.base_url,
            images,
            concurrency=concurrency,
            duration_s=settings.duration_s,
            top=settings.top,
        )
    )
    cpu_after, own_after = cpu_seconds(server.token), _own_cpu_s()
    photos_after = _pid_cpu_s(photo_server_pid)
    print(f"  {server.name}{label} {format_result(result)}", flush=True)
    level = result.summary()
    answered = max(result.ok, 1)
    level["cpu_ms_per_request"] = cpu_ms_per_request(cpu_before, cpu_after, result.ok)
    level["load_generator_cpu_ms_per_request"] = round(
        1000 * (own_after - own_before) / answered, 2
    )
    level["photo_server_cpu_ms_per_request"] = round(
        1000 * (photos_after - photos_before) / answered, 2
    )
    return level


def measure_load(
    server: RunningServer,
    images: ImageURLs,
    settings: LoadSettings,
    *,
    photo_server_pid: int | None = None,
    warm_up_requests: int = WARM_UP_REQUESTS,
) -> dict[str, Any]:
    """Every level of ``settings``, memory sampled after each one (the peak is kept)."""
    warm_up(server, images, settings.top, warm_up_requests)
    levels = []
    memory = []
    for concurrency in settings.concurrencies:
        levels.append(
            measure_level(server, images, concurrency, settings, photo_server_pid=photo_server_pid)
        )
        memory.append(memory_snapshot(server.token))
    peak = max(memory, key=lambda m: m["pss_bytes"])
    return {"levels": levels, "memory": peak}


# --------------------------------------------------------------------------- bare pipeline


def measure_model(
    model: str,
    options: RuntimeOptions,
    *,
    batch_sizes: Sequence[int],
    model_seconds: float,
) -> dict[str, Any]:
    """Model images/s on decoded inputs and batch-1 latency (no photo involved, so one
    measurement serves every workload: :func:`with_decode` adds a workload's decode).

    TensorFlow runs one call at a time at each batch size (the best is kept); LiteRT
    runs batch 1 from as many threads as the options have interpreters, as served.
    """
    from imagetagger.models.runtimes import load_model

    classifier = load_model(model, options)
    batch1 = time_model(classifier, 1, min_time_s=model_seconds, max_iterations=500)
    if options.runtime == "litert":
        workers = options.interpreters
        batches = {1: concurrent_images_per_s(classifier, 1, workers, min_time_s=model_seconds)}
    else:
        workers = 1
        batches = {1: batch1.images_per_s} | {
            b: time_model(classifier, b, min_time_s=model_seconds, max_iterations=500).images_per_s
            for b in sorted(set(batch_sizes) - {1})
        }
    input_size = classifier.spec.input_size
    del classifier
    gc.collect()
    best_batch = max(batches, key=lambda b: batches[b])
    return {
        "runtime": options.runtime,
        "options": dataclasses.asdict(options),
        "workers": workers,
        "input_size": input_size,
        "batches": {b: round(rate, 2) for b, rate in batches.items()},
        "best_batch": best_batch,
        "model_img_s": round(batches[best_batch], 2),
        "batch1_ms": round(1000 * batch1.median_s, 2),
    }


def measure_decode(model: str, photos: Sequence[Photo], *, repeats: int) -> dict[str, float]:
    """Seconds of the service's decode + crop (``prepare_image``) per photo, by name."""
    spec = get_spec(model)
    return {
        p.name: time_prepare(p.data, spec.input_size, spec.crop_padding, repeats=repeats)
        for p in photos
    }


def with_decode(model_part: dict[str, Any], decode_s: dict[str, float]) -> dict[str, Any]:
    """A bare pipeline: the model's figures, a workload's decode + crop per photo, and
    the serial ceiling they allow, ``1 / (1 / model_img_s + decode_s_per_photo)`` req/s."""
    decode_mean_s = statistics.fmean(decode_s.values())
    return {
        **model_part,
        "decode_ms_mean": round(1000 * decode_mean_s, 2),
        "decode_ms": {name: round(1000 * s, 2) for name, s in decode_s.items()},
        "ceiling_req_s": round(1.0 / (1.0 / model_part["model_img_s"] + decode_mean_s), 2),
    }
