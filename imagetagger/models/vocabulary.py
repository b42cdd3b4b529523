"""What every runtime and every caller of one shares: the names, the options, the protocol.

One options model says "which model, on which runtime, how": :class:`ModelOptions`
(model, weights) on top of :class:`RuntimeOptions` (runtime, precision, threads,
interpreters). The Serve app's ``args``, the ``imagetagger`` commands and the bulk job
all build one, so each validates the same way and with the same defaults. The
runtimes (:mod:`litert`, :mod:`tensorflow_runtime`) and the dispatcher
(:mod:`runtimes`) import from here and never from each other. Nothing here imports
NumPy, TensorFlow or LiteRT: the CLI's ``--help`` stays instant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from imagetagger.models.specs import MODEL_SPECS, ModelSpec

if TYPE_CHECKING:
    import numpy as np

Runtime = Literal["litert", "tensorflow"]
Precision = Literal["float32", "int8"]
ComputeDtype = Literal["float32", "mixed_float16", "mixed_bfloat16"]
RUNTIMES: tuple[Runtime, ...] = ("litert", "tensorflow")
PRECISIONS: tuple[Precision, ...] = ("float32", "int8")
COMPUTE_DTYPES: tuple[ComputeDtype, ...] = ("float32", "mixed_float16", "mixed_bfloat16")
DEFAULT_RUNTIME: Runtime = "litert"
DEFAULT_MODEL = "efficientnet_lite2"


def check_model_name(name: str) -> str:
    """``name`` if it is a registered model; ValueError naming the choices otherwise."""
    if name not in MODEL_SPECS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(sorted(MODEL_SPECS))}")
    return name


def check_runtime_name(name: str) -> str:
    """``name`` if it is a runtime; ValueError naming the choices otherwise."""
    if name not in RUNTIMES:
        raise ValueError(f"unknown runtime {name!r}; choose one of {', '.join(RUNTIMES)}")
    return name


class Classifier(Protocol):
    """What the service, the CLI and the bulk job need from a loaded model, any runtime."""

    spec: ModelSpec

    def predict_proba(self, batch: np.ndarray) -> np.ndarray: ...

    def warmup(self, batch_size: int = 1) -> np.ndarray: ...


class RuntimeOptions(BaseModel):
    """How to run a model.

    ``intra_op_threads``: threads per inference (TensorFlow's intra-op pool; a LiteRT
    interpreter's threads), 0 = the runtime's default. ``inter_op_threads``: TensorFlow
    only. ``interpreters``: LiteRT only, how many images run at once in one process.
    Those two are ignored by the other runtime. ``compute_dtype`` (TensorFlow: mixed
    precision on GPUs) and ``precision`` (LiteRT) change the model's numbers, so asking
    for them on the other runtime is an error rather than a silently different model.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    runtime: Runtime = Field(
        default=DEFAULT_RUNTIME,
        description="litert (CPU default: XNNPACK, no TensorFlow in the replica) or "
        "tensorflow (GPUs, mixed precision).",
    )
    precision: Precision = Field(default="float32", description="litert only.")
    compute_dtype: ComputeDtype = Field(default="float32", description="tensorflow only.")
    intra_op_threads: int = Field(
        default=0, description="Threads per inference; 0 = the runtime's default."
    )
    inter_op_threads: int = Field(default=0, description="tensorflow only; 0 = default.")
    interpreters: int = Field(
        default=1, description="litert only: images inferred at once per replica."
    )

    @model_validator(mode="after")
    def _check_runtime_options(self) -> RuntimeOptions:
        if self.runtime == "litert" and self.compute_dtype != "float32":
            raise ValueError("compute_dtype applies to the tensorflow runtime only")
        if self.runtime == "tensorflow" and self.precision != "float32":
            raise ValueError("precision applies to the litert runtime only")
        if min(self.intra_op_threads, self.inter_op_threads) < 0 or self.interpreters < 1:
            raise ValueError("thread and interpreter counts must be positive (0: default)")
        return self

    def runtime_options(self) -> RuntimeOptions:
        """Only the runtime's part (what ``load_model`` and the ModelDeployment take)."""
        return RuntimeOptions.model_validate(
            self.model_dump(include=set(RuntimeOptions.model_fields))
        )


class ModelOptions(RuntimeOptions):
    """Which model, with which weights, and how to run it."""

    model: str = Field(default=DEFAULT_MODEL, description=f"One of {sorted(MODEL_SPECS)}.")
    weights_path: str | None = Field(
        default=None, description="Local weights file (efficientnet_b3 offline)."
    )

    @model_validator(mode="after")
    def _check_model(self) -> ModelOptions:
        check_model_name(self.model)
        return self
