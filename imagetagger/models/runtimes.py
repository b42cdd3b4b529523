"""Model runtimes: one place that turns (model, runtime, options) into a classifier.

``litert`` is the CPU default: the same Keras model converted to a LiteRT flatbuffer,
run by the XNNPACK interpreter (on 2 cores 1.9x TensorFlow's speed at a fifth of its
memory). ``tensorflow`` runs Keras on TensorFlow: GPUs, mixed precision, and batches
large enough for ``@serve.batch`` to pay. Both take uint8 (N, S, S, 3) crops and
return float32 (N, 1000) probabilities, and agree within 1e-5.
"""

from __future__ import annotations

from pathlib import Path

from imagetagger.models.options import Classifier, RuntimeOptions

# RuntimeOptions is re-exported: the Dockerfile and the ModelDeployment import it from here.
__all__ = ["RuntimeOptions", "load_model"]


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
            solo_threads=options.solo_threads,
        )
    from imagetagger.tfconfig import configure_tensorflow

    configure_tensorflow(
        intra_op_threads=options.intra_op_threads, inter_op_threads=options.inter_op_threads
    )
    from imagetagger.models.tensorflow_runtime import load_tensorflow_classifier

    return load_tensorflow_classifier(
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
