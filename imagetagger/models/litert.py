"""The ``litert`` runtime: the registry's Keras model, converted once, run by LiteRT.

TensorFlow converts the model in a child process (:mod:`litert_convert`); the
flatbuffer is cached beside the converted weights, checksummed, and keyed by the
weights it came from and its precision. This module imports only ``ai_edge_litert``
and NumPy: a process serving ``litert`` never loads TensorFlow (~1 GiB less memory).

An interpreter is not thread-safe, but ``invoke`` releases the GIL, so a small pool of
single-threaded interpreters runs images in parallel from worker threads: on 2 cores
two 1-thread interpreters beat one 2-thread interpreter (benchmarks/README.md). A lone
image, though, leaves the other core idle: with ``solo_threads`` an extra interpreter
with that many threads runs an image that arrives while no other is running (on 2 cores
25 -> 13 ms for efficientnet_lite2), and the pool takes every image that overlaps one.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from imagetagger.errors import ModelLoadError
from imagetagger.models import checksums
from imagetagger.models.batches import NUM_CLASSES, check_batch, no_probabilities
from imagetagger.models.mapped_pages import release_mapped_pages
from imagetagger.models.options import PRECISIONS
from imagetagger.models.sources import weights_fingerprint
from imagetagger.models.specs import ModelSpec, get_spec

logger = logging.getLogger(__name__)

# Bump when the conversion (graph wrapper, converter options) changes: old files are ignored.
FLATBUFFER_FORMAT = 1
CONVERT_TIMEOUT_S = 900


def flatbuffer_file(
    spec: ModelSpec, cache_dir: Path, weights_path: str | None = None, precision: str = "float32"
) -> Path:
    """Cache location of the converted model: tied to its weights and its precision (and,
    for int8, to the calibration photos)."""
    fingerprint = weights_fingerprint(spec, weights_path)
    if precision != "float32":
        fingerprint += "-" + _calibration_fingerprint()
    return cache_dir / f"{spec.name}-{fingerprint}-v{FLATBUFFER_FORMAT}-{precision}.tflite"


def _calibration_fingerprint() -> str:
    from imagetagger.models.calibration import calibration_files

    digest = hashlib.sha256()
    for path in calibration_files():
        digest.update(path.name.encode() + b"\0" + checksums.file_sha256(path).encode())
    return digest.hexdigest()[:8]


class _Interpreter:
    """One LiteRT interpreter, run one image at a time.

    XNNPACK is no faster per image at batch 8 than at batch 1 on CPU (measured:
    benchmarks/README.md), and a fixed shape never re-plans the graph, so a batch runs
    image by image.
    """

    def __init__(self, model_path: Path, num_threads: int, outputs_logits: bool) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self._outputs_logits = outputs_logits
        self._interpreter = Interpreter(model_path=str(model_path), num_threads=num_threads or None)
        self._interpreter.resize_tensor_input(
            self._interpreter.get_input_details()[0]["index"], [1, *self._image_shape()]
        )
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]["index"]
        self._output = self._interpreter.get_output_details()[0]["index"]

    def _image_shape(self) -> list[int]:
        return [int(d) for d in self._interpreter.get_input_details()[0]["shape"][1:]]

    def run(self, batch: np.ndarray) -> np.ndarray:
        probabilities = np.empty((batch.shape[0], NUM_CLASSES), dtype=np.float32)
        for index in range(batch.shape[0]):
            self._interpreter.set_tensor(self._input, batch[index : index + 1])
            self._interpreter.invoke()
            probabilities[index] = self._interpreter.get_tensor(self._output)[0]
        return softmax(probabilities) if self._outputs_logits else probabilities


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float32, shifted by the row maximum so exp never overflows."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


class LiteRTClassifier:
    """uint8 RGB batches in, float32 softmax probabilities out; safe to call from threads.

    ``pool_size`` interpreters, each with ``num_threads`` threads (0: LiteRT's default).
    A call takes a free interpreter, or waits for one; a call made while no other runs
    takes the solo interpreter instead, when ``solo_threads`` asks for one. An int8
    flatbuffer returns logits; the softmax then runs here, in float.
    """

    runtime = "litert"

    def __init__(
        self,
        spec: ModelSpec,
        model_path: Path,
        *,
        num_threads: int = 1,
        pool_size: int = 1,
        solo_threads: int = 0,
        precision: str = "float32",
    ) -> None:
        if pool_size < 1:
            raise ValueError(f"pool_size must be at least 1, got {pool_size}")
        self.spec = spec
        self.model_path = model_path
        self.pool_size = pool_size
        self.precision = precision
        logits = precision != "float32"
        self._pool: queue.SimpleQueue[_Interpreter] = queue.SimpleQueue()
        for _ in range(pool_size):
            self._pool.put(_Interpreter(model_path, num_threads, logits))
        self._solo = _Interpreter(model_path, solo_threads, logits) if solo_threads else None
        self._solo_lock = threading.Lock()  # held by whoever runs the solo interpreter

    def _alone(self) -> bool:
        """No call is running: every pool interpreter is free, and now the solo one is ours."""
        return (
            self._solo is not None
            and self._pool.qsize() == self.pool_size
            and self._solo_lock.acquire(blocking=False)
        )

    @contextmanager
    def _interpreter(self) -> Iterator[_Interpreter]:
        if self._alone():
            try:
                yield self._solo
            finally:
                self._solo_lock.release()
            return
        interpreter = self._pool.get()
        try:
            yield interpreter
        finally:
            self._pool.put(interpreter)

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities, float32 (N, 1000), for a uint8 batch (N, S, S, 3)."""
        batch = check_batch(self.spec, batch)
        if batch.shape[0] == 0:
            return no_probabilities()
        with self._interpreter() as interpreter:
            return interpreter.run(batch)

    def warmup(self, batch_size: int = 1) -> np.ndarray:
        """Run every interpreter once (XNNPACK packs its weights on the first call)."""
        size = self.spec.input_size
        zeros = np.zeros((batch_size, size, size, 3), dtype=np.uint8)
        held = [self._pool.get() for _ in range(self.pool_size)]
        try:
            outputs = [interpreter.run(zeros) for interpreter in held]
            if self._solo is not None:
                with self._solo_lock:
                    outputs.append(self._solo.run(zeros))
        finally:
            for interpreter in held:
                self._pool.put(interpreter)
        return outputs[0]


def ensure_flatbuffer(
    name: str,
    *,
    weights_path: str | None = None,
    cache_dir: Path | None = None,
    precision: str = "float32",
) -> Path:
    """The cached flatbuffer of model ``name``, converted (in a child process) if needed."""
    spec = get_spec(name)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    cache_dir = cache_dir or checksums.default_cache_dir()
    target = flatbuffer_file(spec, cache_dir, weights_path, precision)
    try:
        checksums.verify(target)
        return target
    except ValueError as exc:
        if target.exists():
            logger.warning("Ignoring unusable LiteRT cache %s (%s); rebuilding it", target, exc)
    except OSError as exc:
        logger.warning("Cannot read LiteRT cache %s (%s); rebuilding it", target, exc)
    _convert_in_child(name, target, weights_path, cache_dir, precision)
    try:
        checksums.verify(target)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"model {name!r}: converted LiteRT model {target} is unusable: {exc}"
        ) from exc
    return target


def _convert_in_child(
    name: str, target: Path, weights_path: str | None, cache_dir: Path, precision: str
) -> None:
    command = [sys.executable, "-m", "imagetagger.models.litert_convert", "--model", name]
    command += ["--out", str(target), "--cache-dir", str(cache_dir), "--precision", precision]
    if weights_path is not None:
        command += ["--weights-path", weights_path]
    started = time.perf_counter()
    logger.info("Converting %s to LiteRT (%s) into %s", name, precision, target)
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=CONVERT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ModelLoadError(
            f"model {name!r}: LiteRT conversion took over {CONVERT_TIMEOUT_S}s"
        ) from None
    if done.returncode != 0:
        raise ModelLoadError(
            f"model {name!r}: LiteRT conversion failed: {_last_error_line(done.stderr)}"
        )
    logger.info("Converted %s in %.1fs", name, time.perf_counter() - started)


def _last_error_line(stderr: str) -> str:
    """The child's own error message (its last line), not its whole traceback."""
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def load_litert_classifier(
    name: str,
    *,
    weights_path: str | None = None,
    cache_dir: Path | None = None,
    precision: str = "float32",
    num_threads: int = 1,
    pool_size: int = 1,
    solo_threads: int = 0,
) -> LiteRTClassifier:
    """Model ``name`` on LiteRT, warmed up and checked like the TensorFlow one."""
    path = ensure_flatbuffer(
        name, weights_path=weights_path, cache_dir=cache_dir, precision=precision
    )
    try:
        classifier = LiteRTClassifier(
            get_spec(name),
            path,
            num_threads=num_threads,
            pool_size=pool_size,
            solo_threads=solo_threads,
            precision=precision,
        )
        probs = classifier.warmup()
    except (RuntimeError, ValueError) as exc:
        raise ModelLoadError(f"model {name!r}: LiteRT cannot run {path}: {exc}") from exc
    release_mapped_pages(path)  # XNNPACK has packed the weights: the file's pages are unused
    if not (np.all(np.isfinite(probs)) and abs(float(probs.sum()) - 1.0) < 1e-2):
        raise ModelLoadError(f"model {name!r}: warm-up output is not a probability distribution")
    return classifier
