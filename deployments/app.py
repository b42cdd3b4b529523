"""The application builder: compose ImageTagger -> (Downloader, ModelDeployment).

``serve_config.yaml`` points at :func:`build_app` with ``args``; resources, replica
counts and ``user_config`` of each deployment live in that YAML, not here.
``app`` is the same application with default arguments, for ``serve run deployments.app:app``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from ray.serve import Application

from deployments.downloader import Downloader
from deployments.ingress import ImageTagger
from deployments.model import ModelDeployment
from imagetagger.models.runtimes import DEFAULT_RUNTIME, Precision, Runtime, RuntimeOptions
from imagetagger.models.specs import MODEL_SPECS

DEFAULT_MODEL = "efficientnet_lite2"


class AppArgs(BaseModel):
    """``args`` of the application in the Serve config."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str = Field(default=DEFAULT_MODEL, description=f"One of {sorted(MODEL_SPECS)}.")
    runtime: Runtime = Field(
        default=DEFAULT_RUNTIME,
        description="litert (CPU default: XNNPACK, no TensorFlow in the replica) or "
        "tensorflow (GPUs, mixed precision).",
    )
    precision: Precision = Field(default="float32", description="litert only.")
    weights_path: str | None = Field(
        default=None, description="Local weights file (efficientnet_b3 offline)."
    )
    compute_dtype: str = Field(
        default="float32",
        pattern="^(float32|mixed_float16|mixed_bfloat16)$",
        description="tensorflow only.",
    )
    intra_op_threads: int = Field(
        default=0, ge=0, description="Threads per inference; 0 = the runtime's default."
    )
    inter_op_threads: int = Field(default=0, ge=0, description="tensorflow only; 0 = default.")
    interpreters: int = Field(
        default=1, ge=1, description="litert only: images inferred at once per replica."
    )

    @model_validator(mode="after")
    def _check(self) -> AppArgs:
        if self.model not in MODEL_SPECS:
            raise ValueError(f"unknown model {self.model!r}; choose one of {sorted(MODEL_SPECS)}")
        self.runtime_options()  # options that do not apply to the runtime fail here
        return self

    def runtime_options(self) -> RuntimeOptions:
        return RuntimeOptions(
            runtime=self.runtime,
            precision=self.precision,
            compute_dtype=self.compute_dtype,
            intra_op_threads=self.intra_op_threads,
            inter_op_threads=self.inter_op_threads,
            interpreters=self.interpreters,
        )


def build_app(args: dict[str, Any] | None = None) -> Application:
    try:
        settings = AppArgs.model_validate(args or {})
    except ValidationError as exc:  # a short message in `serve run` output, not a dump
        raise ValueError(f"invalid application args: {exc}") from None
    downloader = Downloader.bind(settings.model)
    model = ModelDeployment.bind(
        settings.model, settings.runtime_options(), weights_path=settings.weights_path
    )
    return ImageTagger.bind(downloader, model, settings.model)


app = build_app()
