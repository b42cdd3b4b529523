"""Model runtimes: one place that turns (model, runtime, options) into a classifier.

``litert`` is the CPU default: the same Keras model converted to a LiteRT flatbuffer,
run by the XNNPACK interpreter (on 2 cores 1.9x TensorFlow's speed at a fifth of its
memory). ``tensorflow`` runs Keras on TensorFlow: GPUs, mixed precision, and batches
large enough for ``@serve.batch`` to pay. Both take uint8 (N, S, S, 3) crops and
return float32 (N, 1000) probabilities, and agree within 1e-5.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from imagetagger.models.specs import ModelSpec

if TYPE_CHECKING:
    import numpy as np

Runtime = Literal["litert", "tensorflow"]
Precision = Literal["float32", "int8"]
RUNTIMES: tuple[Runtime, ...] = ("litert", "tensorflow")
PRECISIONS: tuple[Precision, ...] = ("float32", "int8")
DEFAULT_RUNTIME: Runtime = "litert"


class Classifier(Protocol):
    """What the service, the CLI and the bulk job need from a loaded model."""

    spec: ModelSpec

    def predict_proba(self, batch: np.ndarray) -> np.ndarray: ...

    def warmup(self, batch_size: int = 1) -> np.ndarray: ...


@dataclass(frozen=True)
class RuntimeOptions:
    """How to run a model.

    ``intra_op_threads``: threads per inference (TensorFlow's intra-op pool; a LiteRT
    interpreter's threads), 0 = the runtime's default. ``inter_op_threads``: TensorFlow
    only. ``interpreters``: LiteRT only, how many images run at once in one process.
    Those two are ignored by the other runtime. ``compute_dtype`` (TensorFlow: mixed
    precision on GPUs) and ``precision`` (LiteRT) change the model's numbers, so asking
    for them on the other runtime is an error rather than a silently different model.
    """

    runtime: Runtime = DEFAULT_RUNTIME
    precision: Precision = "float32"
    compute_dtype: str = "float32"
    intra_op_threads: int = 0
    inter_op_threads: int = 0
    interpreters: int = 1

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {RUNTIMES}, got {self.runtime!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.runtime == "litert" and self.compute_dtype != "float32":
            raise ValueError("compute_dtype applies to the tensorflow runtime only")
        if self.runtime == "tensorflow" and self.precision != "float32":
            raise ValueError("precision applies to the litert runtime only")
        if min(self.intra_op_threads, self.inter_op_threads) < 0 or self.interpreters < 1:
            raise ValueError("thread and interpreter counts must be positive (0: default)")


def load_model(
    name: str,
    options: RuntimeOptions | None = None,
    *,
    weights_path: str | None = None,
    cache_dir: Path | None = None,
) -> Classifier:
    """Load model ``name`` on the runtime ``options`` ask for, warmed up and checked.

    On ``tensorflow`` the process-wide TensorFlow settings (thread pools, GPU memory
    growth) are made first, so call this before anything else touches TensorFlow.
    """
    options = options or RuntimeOptions()
    if options.runtime == "litert":
        from imagetagger.models.litert import load_litert_classifier

        return load_litert_classifier(
            name,
            weights_path=weights_path,
            cache_dir=cache_dir,
            precision=options.precision,
            num_threads=options.intra_op_threads,
            pool_size=options.interpreters,
        )
    from imagetagger.tfconfig import configure_tensorflow

    configure_tensorflow(
        intra_op_threads=options.intra_op_threads, inter_op_threads=options.inter_op_threads
    )
    from imagetagger.models.loader import load_classifier

    return load_classifier(
        name, weights_path=weights_path, cache_dir=cache_dir, compute_dtype=options.compute_dtype
    )


def model_identity(classifier: Classifier, options: RuntimeOptions, weights: str) -> str:
    """Everything that changes a loaded model's answers, as one string.

    The response cache keys answers by it: model, runtime, numbers (precision or
    compute dtype) and ``weights``, the weights' fingerprint
    (:func:`imagetagger.models.sources.weights_fingerprint`). On LiteRT the converted
    file's name is used as well: it also names the conversion format and, for int8,
    the calibration photos.
    """
    numbers = options.precision if options.runtime == "litert" else options.compute_dtype
    identity = f"{classifier.spec.name}/{options.runtime}/{numbers}/weights-{weights}"
    model_path = getattr(classifier, "model_path", None)
    return identity if model_path is None else f"{identity}/{Path(model_path).name}"
