"""Model throughput and preprocessing cost, in-process, with no serving around them.

For each model: images/s through ``Classifier.predict_proba`` at several batch sizes
(warm; the median time of repeated batches), and the time ``prepare_image`` takes
(decode + center crop + resize) for a 512x512 and a 4000x3000 JPEG. These are the
ceilings the service is compared with in ``bench_service.py``.

Usage::

    python -m benchmarks.model_throughput                       # lite0, lite1, lite2
    python -m benchmarks.model_throughput --models efficientnet_lite0 --quick
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import numpy as np

from benchmarks.photos import build_photo_set, encode_photo
from imagetagger.images import prepare_image

LITE_MODELS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
BATCH_SIZES = (1, 8, 16, 32)
PACKAGES = ("tensorflow", "keras", "pillow", "numpy", "ray", "fastapi", "uvicorn", "aiohttp")


def machine_info() -> dict[str, Any]:
    """CPU model, core counts and package versions: the context every figure needs."""
    cpu_model = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
    }


def format_machine(info: dict[str, Any]) -> str:
    versions = ", ".join(f"{name} {version}" for name, version in info["versions"].items())
    return (
        f"Machine: {info['cpu_model']}, {info['cpus_usable']} usable of {info['cpu_count']} "
        f"cores; {info['platform']}; Python {info['python']}\nVersions: {versions}"
    )


@dataclass(frozen=True)
class BatchTiming:
    batch_size: int
    median_s: float  # per batch
    iterations: int

    @property
    def images_per_s(self) -> float:
        return self.batch_size / self.median_s


def sample_batch(size: int, batch_size: int, crop_padding: int = 32) -> np.ndarray:
    """A uint8 batch of real, already-prepared photos (the photo set, repeated)."""
    crops = [
        prepare_image(photo.data, size=size, crop_padding=crop_padding)
        for photo in build_photo_set()
    ]
    return np.stack([crops[i % len(crops)] for i in range(batch_size)])


def time_model(
    classifier: Any,
    batch_size: int,
    *,
    min_time_s: float = 3.0,
    max_iterations: int = 200,
    min_iterations: int = 3,
) -> BatchTiming:
    """Median seconds per ``predict_proba`` call on a warm model (two warm-up calls first)."""
    spec = classifier.spec
    batch = sample_batch(spec.input_size, batch_size, spec.crop_padding)
    for _ in range(2):
        classifier.predict_proba(batch)
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < max_iterations and (
        len(times) < min_iterations or time.perf_counter() - started < min_time_s
    ):
        before = time.perf_counter()
        classifier.predict_proba(batch)
        times.append(time.perf_counter() - before)
    return BatchTiming(batch_size, statistics.median(times), len(times))


def concurrent_images_per_s(
    classifier: Any, batch_size: int, workers: int, *, min_time_s: float = 3.0
) -> float:
    """Images/s with ``workers`` threads calling ``predict_proba`` back to back.

    How the LiteRT runtime is served: several single-threaded interpreters side by
    side (``invoke`` releases the GIL). With one worker this is plain throughput.
    """
    spec = classifier.spec
    batch = sample_batch(spec.input_size, batch_size, spec.crop_padding)
    for _ in range(2 * workers):
        classifier.predict_proba(batch)
    done = [0] * workers
    deadline = time.perf_counter() + min_time_s

    def work(index: int) -> None:
        while time.perf_counter() < deadline:
            classifier.predict_proba(batch)
            done[index] += batch_size

    started = time.perf_counter()
    threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done) / (time.perf_counter() - started)


def time_prepare(data: bytes, size: int, crop_padding: int = 32, *, repeats: int = 10) -> float:
    """Median seconds of ``prepare_image`` (decode + crop + resize) on ``data``."""
    prepare_image(data, size=size, crop_padding=crop_padding)  # warm Pillow's plugins
    times = []
    for _ in range(repeats):
        before = time.perf_counter()
        prepare_image(data, size=size, crop_padding=crop_padding)
        times.append(time.perf_counter() - before)
    return statistics.median(times)


def measure(
    model_name: str,
    batch_sizes: Sequence[int],
    *,
    min_time_s: float,
    max_iterations: int,
    repeats: int,
) -> dict[str, Any]:
    """Load ``model_name`` and time it at each batch size, plus preprocessing."""
    from imagetagger.models.tensorflow_runtime import (
        load_tensorflow_classifier as load_classifier,
    )

    started = time.perf_counter()
    classifier = load_classifier(model_name)
    load_s = time.perf_counter() - started
    spec = classifier.spec
    timings = [
        time_model(classifier, b, min_time_s=min_time_s, max_iterations=max_iterations)
        for b in batch_sizes
    ]
    jpegs = {
        "512x512": encode_photo("astronaut", 512, 512, "JPEG"),
        "4000x3000": encode_photo("chelsea", 4000, 3000, "JPEG"),
    }
    prepare_ms = {
        label: 1000 * time_prepare(data, spec.input_size, spec.crop_padding, repeats=repeats)
        for label, data in jpegs.items()
    }
    return {
        "model": model_name,
        "input_size": spec.input_size,
        "load_s": round(load_s, 2),
        "batches": [
            {
                "batch_size": t.batch_size,
                "median_batch_ms": round(1000 * t.median_s, 2),
                "images_per_s": round(t.images_per_s, 2),
                "iterations": t.iterations,
            }
            for t in timings
        ],
        "prepare_ms": {label: round(ms, 2) for label, ms in prepare_ms.items()},
    }


def markdown_table(results: list[dict[str, Any]], batch_sizes: Sequence[int]) -> str:
    batch_columns = " | ".join(f"b={b} img/s" for b in batch_sizes)
    header = f"| model | input | {batch_columns} | prepare 512x512 | prepare 4000x3000 |"
    rows = [header, "|" + "---|" * (len(batch_sizes) + 4)]
    for result in results:
        rates = " | ".join(f"{b['images_per_s']:.1f}" for b in result["batches"])
        prepare = result["prepare_ms"]
        rows.append(
            f"| {result['model']} | {result['input_size']} | {rates} | "
            f"{prepare['512x512']:.1f} ms | {prepare['4000x3000']:.1f} ms |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Model images/s and preprocessing cost.")
    parser.add_argument("--models", nargs="+", default=list(LITE_MODELS))
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=list(BATCH_SIZES))
    parser.add_argument("--seconds", type=float, default=3.0, help="timing per batch size")
    parser.add_argument("--max-iterations", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="short run: 1 s per batch size")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.max_iterations = 1.0, 20

    from imagetagger.tfconfig import configure_tensorflow

    configure_tensorflow()
    info = machine_info()
    results = []
    for name in args.models:
        results.append(
            measure(
                name,
                args.batch_sizes,
                min_time_s=args.seconds,
                max_iterations=args.max_iterations,
                repeats=3 if args.quick else 10,
            )
        )
        print(f"measured {name} (load {results[-1]['load_s']} s)", flush=True)
    print()
    print(markdown_table(results, args.batch_sizes))
    print()
    print(format_machine(info))


if __name__ == "__main__":
    main()
