"""Process-wide TensorFlow settings that must be made before TensorFlow runs its first op."""

from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)


def configure_tensorflow(*, intra_op_threads: int = 0, inter_op_threads: int = 0) -> list[str]:
    """Enable GPU memory growth and set thread pools; returns the visible GPU names.

    Memory growth keeps one replica from taking the whole GPU, so several replicas (or
    a replica and its CUDA neighbours) can share a card. Thread counts of 0 leave
    TensorFlow's defaults; on a small CPU machine shared with other Serve replicas, a
    smaller intra-op pool avoids oversubscribing the cores.
    """
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised in this process: keep its setting
            logger.warning("TensorFlow already initialised; memory growth unchanged")
    try:
        if intra_op_threads:
            tf.config.threading.set_intra_op_parallelism_threads(intra_op_threads)
        if inter_op_threads:
            tf.config.threading.set_inter_op_parallelism_threads(inter_op_threads)
    except RuntimeError:
        logger.warning("TensorFlow already initialised; thread pools unchanged")
    return [gpu.name for gpu in gpus]
