"""Model images/s on an accelerator, on any Keras 3 backend (meant for JAX + CUDA).

Runs the project's own model-building code (random weights: speed does not depend on
them) for efficientnet_lite2 and efficientnet_b3, float32 and mixed_float16, at batch
sizes 1-256, and prints a markdown table. Needs only `keras`, its small pure-Python
dependencies, numpy and this repository on PYTHONPATH; `benchmarks/gpu_check.sh`
sets that up on a machine that has JAX with CUDA but no TensorFlow or Ray.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras
import numpy as np

from imagetagger.models.specs import get_spec, loader_module

BATCH_SIZES = (1, 8, 16, 32, 64, 128, 256)


def build(name: str, dtype: str) -> keras.Model:
    spec = get_spec(name)
    return loader_module(spec).build(spec, dtype)


def images_per_second(model: keras.Model, size: int, batch: int, seconds: float) -> float:
    images = np.random.default_rng(0).integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    inputs = images.astype("float32")
    np.asarray(model.predict_on_batch(inputs))  # compile for this shape
    np.asarray(model.predict_on_batch(inputs))
    calls, started = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - started < seconds:
        np.asarray(model.predict_on_batch(inputs))  # np.asarray waits for the device
        calls += 1
    return calls * batch / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", nargs="+", default=["efficientnet_lite2", "efficientnet_b3"])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "mixed_float16"])
    parser.add_argument("--batches", nargs="+", type=int, default=list(BATCH_SIZES))
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    args = parser.parse_args()

    backend = keras.backend.backend()
    devices = ""
    if backend == "jax":
        import jax

        devices = ", ".join(str(d) for d in jax.devices())
    print(f"# Model throughput: keras {keras.__version__}, backend {backend}, devices {devices}")
    print(f"# host {platform.node()}, python {platform.python_version()}\n")
    print("| model | dtype | " + " | ".join(f"b{b}" for b in args.batches) + " |")
    print("|---|---|" + "---|" * len(args.batches))
    for name in args.models:
        size = get_spec(name).input_size
        for dtype in args.dtypes:
            model = build(name, dtype)
            rates = [images_per_second(model, size, b, args.seconds) for b in args.batches]
            cells = " | ".join(f"{rate:.0f}" for rate in rates)
            print(f"| {name} | {dtype} | {cells} |", flush=True)
            keras.backend.clear_session()


if __name__ == "__main__":
    main()
