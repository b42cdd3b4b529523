"""What every runtime and every caller of one shares: the names, the options, the protocol.

One options model says "which model, on which runtime, how": :class:`ModelOptions`
(model, weights, and the runtime's part, a :class:`RuntimeOptions`: runtime,
precision, threads, interpreters, checked there). The Serve app's ``args``, the
``imagetagger`` commands and the bulk job all build one, so each validates the same
way and with the same defaults. The
runtimes (:mod:`litert`, :mod:`tensorflow_runtime`) and the dispatcher
(:mod:`runtimes`) import from here and never from each other. Nothing here imports
NumPy, TensorFlow or LiteRT: the CLI's ``--help`` stays instant.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from imagetagger.models.specs import MODEL_SPECS, ModelSpec, get_spec

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
    """``name`` if it is a registered model; ValueError naming the choices otherwise
    (:func:`get_spec`'s, the one check)."""
    return get_spec(name).name


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


@dataclass(frozen=True)
class RuntimeOptions:
    """How to run a model: what ``load_model`` and the ModelDeployment take.

    ``intra_op_threads``: threads per inference (TensorFlow's intra-op pool; a LiteRT
    interpreter's threads), 0 = the runtime's default. ``inter_op_threads``: TensorFlow
    only. ``interpreters``: LiteRT only, how many images run at once in one process.
    ``solo_threads``: LiteRT only, the threads of one more interpreter that runs an image
    while no other is running (0: none), so a lone request uses the idle cores too.
    Those three are ignored by the other runtime. ``compute_dtype`` (TensorFlow: mixed
    precision on GPUs) and ``precision`` (LiteRT) change the model's numbers, so asking
    for them on the other runtime is an error rather than a silently different model.
    These checks are the only ones: :class:`ModelOptions` runs them too.
    """

    runtime: Runtime = DEFAULT_RUNTIME
    precision: Precision = "float32"
    compute_dtype: ComputeDtype = "float32"
    intra_op_threads: int = 0
    inter_op_threads: int = 0
    interpreters: int = 1
    solo_threads: int = 0

    def __post_init__(self) -> None:
        check_runtime_name(self.runtime)
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise ValueError(
                f"compute_dtype must be one of {COMPUTE_DTYPES}, got {self.compute_dtype!r}"
            )
        if self.runtime == "litert" and self.compute_dtype != "float32":
            raise ValueError("compute_dtype applies to the tensorflow runtime only")
        if self.runtime == "tensorflow" and self.precision != "float32":
            raise ValueError("precision applies to the litert runtime only")
        threads = (self.intra_op_threads, self.inter_op_threads, self.solo_threads)
        if min(threads) < 0 or self.interpreters < 1:
            raise ValueError("thread and interpreter counts must be positive (0: default)")


_RUNTIME_DEFAULTS = RuntimeOptions()


class ModelOptions(BaseModel):
    """Which model, with which weights, and how to run it (the runtime's part is a
    :class:`RuntimeOptions`, checked by it)."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    model: str = Field(default=DEFAULT_MODEL, description=f"One of {sorted(MODEL_SPECS)}.")
    weights_path: str | None = Field(
        default=None, description="Local weights file (efficientnet_b3 offline)."
    )
    runtime: Runtime = Field(
        default=_RUNTIME_DEFAULTS.runtime,
        description="litert (CPU default: XNNPACK, no TensorFlow in the replica) or "
        "tensorflow (GPUs, mixed precision).",
    )
    precision: Precision = Field(default=_RUNTIME_DEFAULTS.precision, description="litert only.")
    compute_dtype: ComputeDtype = Field(
        default=_RUNTIME_DEFAULTS.compute_dtype, description="tensorflow only."
    )
    intra_op_threads: int = Field(
        default=_RUNTIME_DEFAULTS.intra_op_threads,
        description="Threads per inference; 0 = the runtime's default.",
    )
    inter_op_threads: int = Field(
        default=_RUNTIME_DEFAULTS.inter_op_threads, description="tensorflow only; 0 = default."
    )
    interpreters: int = Field(
        default=_RUNTIME_DEFAULTS.interpreters,
        description="litert only: images inferred at once per replica.",
    )
    solo_threads: int = Field(
        default=_RUNTIME_DEFAULTS.solo_threads,
        description="litert only: threads of one more interpreter that runs an image "
        "while no other is running (a lone request's latency); 0 = none.",
    )

    @model_validator(mode="after")
    def _check(self) -> ModelOptions:
        check_model_name(self.model)
        self.runtime_options()  # options that do not apply to the runtime fail here
        return self

    def runtime_options(self) -> RuntimeOptions:
        """The runtime's part (what ``load_model`` and the ModelDeployment take)."""
        return RuntimeOptions(
            **{
                field.name: getattr(self, field.name)
                for field in dataclasses.fields(RuntimeOptions)
            }
        )
