"""Convert a registry model to a LiteRT flatbuffer with TensorFlow's own converter.

This is the only LiteRT code that imports TensorFlow, and it runs in a child process
(``python -m imagetagger.models.litert_convert``), so a replica serving ``litert``
never loads TensorFlow. The flatbuffer takes the same uint8 RGB crop the TensorFlow
runtime takes (the cast to float32 is the graph's first op) and returns float32
softmax probabilities. Only builtin ops are allowed: a TF-only op fails the conversion
instead of needing the TensorFlow runtime at serve time.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from imagetagger.errors import ModelLoadError
from imagetagger.models.options import PRECISIONS
from imagetagger.tfconfig import configure_tensorflow

if TYPE_CHECKING:
    import keras

logger = logging.getLogger(__name__)


def convert(
    model: keras.Model, input_size: int, precision: str = "float32", crop_padding: int = 32
) -> bytes:
    """The flatbuffer of ``model`` behind a uint8 input of shape (N, S, S, 3).

    ``int8``: full-integer quantization (int8 weights and activations) calibrated on
    the shipped photo set, with uint8 input and float32 output as in the float model.
    Its output is the dequantized logits, not probabilities: an int8 softmax has steps
    of 1/256 (measured: probabilities summing to 0.64-0.91), so the runtime applies the
    softmax in float (:class:`LiteRTClassifier`).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    import keras
    import tensorflow as tf

    images = keras.Input((input_size, input_size, 3), dtype="uint8", name="images")
    body = model if precision == "float32" else logits_model(model)
    wrapped = keras.Model(images, body(keras.ops.cast(images, "float32")))
    converter = tf.lite.TFLiteConverter.from_keras_model(wrapped)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if precision == "int8":
        from imagetagger.models.calibration import calibration_inputs

        samples = calibration_inputs(input_size, crop_padding)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([sample[np.newaxis]] for sample in samples)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter.convert()


def logits_model(model: keras.Model) -> keras.Model:
    """``model`` without its final softmax: a ``logits`` layer (EfficientNet-Lite), or a
    copy of a softmax ``Dense`` head without the activation (Keras applications)."""
    import keras

    try:
        return keras.Model(model.inputs, model.get_layer("logits").output)
    except ValueError:
        pass
    head = model.layers[-1]
    if not isinstance(head, keras.layers.Dense) or head.activation is not keras.activations.softmax:
        raise ValueError(f"{model.name}: no logits layer and no softmax Dense head")
    linear = keras.layers.Dense(head.units, name="logits")
    outputs = linear(head.input)
    linear.set_weights(head.get_weights())
    return keras.Model(model.inputs, outputs)


def convert_to_file(
    model_name: str,
    target: Path,
    *,
    weights_path: str | None = None,
    cache_dir: Path | None = None,
    precision: str = "float32",
) -> None:
    """Load the Keras model (converting its weights if needed) and cache its flatbuffer."""
    from imagetagger.models.checksums import store_with_checksum
    from imagetagger.models.tensorflow_runtime import load_tensorflow_classifier

    classifier = load_tensorflow_classifier(
        model_name, weights_path=weights_path, cache_dir=cache_dir
    )
    started = time.perf_counter()
    spec = classifier.spec
    flatbuffer = convert(classifier.model, spec.input_size, precision, spec.crop_padding)
    store_with_checksum(target, lambda tmp: tmp.write_bytes(flatbuffer))
    logger.info(
        "Converted %s to LiteRT (%s, %.1f MB) in %.1fs",
        model_name,
        precision,
        len(flatbuffer) / 1e6,
        time.perf_counter() - started,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--weights-path", default=None)
    parser.add_argument("--cache-dir", default=None, type=Path)
    parser.add_argument("--precision", default="float32", choices=PRECISIONS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    configure_tensorflow()
    try:
        convert_to_file(
            args.model,
            args.out,
            weights_path=args.weights_path,
            cache_dir=args.cache_dir,
            precision=args.precision,
        )
    except ModelLoadError as exc:  # the parent shows this last line as the reason
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
