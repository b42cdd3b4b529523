#!/usr/bin/env bash
# GPU speed check, under 5 minutes, for a machine with an NVIDIA GPU where JAX (with
# CUDA) is installed but TensorFlow and Ray may not be. It runs this repository's
# Keras 3 model code on the JAX backend and prints images/s at batch 1-256 for
# efficientnet_lite2 and efficientnet_b3, float32 and mixed_float16.
#
#   bash benchmarks/gpu_check.sh [DIR_WITH_KERAS_WHEEL]
#
# With a directory, keras is installed from the wheel found there (no index needed);
# otherwise pip installs keras from the package index.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${TMPDIR:-/tmp}/imagetagger-gpu-check"
python3 -m venv --system-site-packages "$venv"  # keeps the machine's JAX + CUDA
if [[ $# -ge 1 ]]; then
  "$venv/bin/pip" install --quiet --no-index --find-links "$1" keras || \
    "$venv/bin/pip" install --quiet --no-deps "$1"/keras-*.whl
else
  "$venv/bin/pip" install --quiet "keras>=3.12,<3.16"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
KERAS_BACKEND=jax PYTHONPATH="$PWD" XLA_PYTHON_CLIENT_PREALLOCATE=false \
  timeout 280 "$venv/bin/python" benchmarks/gpu_throughput.py "${@:2}"
