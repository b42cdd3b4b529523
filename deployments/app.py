"""The application builder: compose ImageTagger -> (Downloader, ModelDeployment).

``serve_config.yaml`` points at :func:`build_app` with ``args``; resources, replica
counts and ``user_config`` of each deployment live in that YAML, not here.
``app`` is the same application with default arguments, for ``serve run deployments.app:app``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from ray.serve import Application

from deployments.downloader import Downloader
from deployments.ingress import ImageTagger
from deployments.model import ModelDeployment
from imagetagger.models.specs import MODEL_SPECS

DEFAULT_MODEL = "efficientnet_lite2"


class AppArgs(BaseModel):
    """``args`` of the application in the Serve config."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str = Field(default=DEFAULT_MODEL, description=f"One of {sorted(MODEL_SPECS)}.")
    weights_path: str | None = Field(
        default=None, description="Local weights file (efficientnet_b3 offline)."
    )
    compute_dtype: str = Field(
        default="float32", pattern="^(float32|mixed_float16|mixed_bfloat16)$"
    )
    intra_op_threads: int = Field(default=0, ge=0, description="0 = TensorFlow's default.")
    inter_op_threads: int = Field(default=0, ge=0, description="0 = TensorFlow's default.")


def build_app(args: dict[str, Any] | None = None) -> Application:
    settings = AppArgs.model_validate(args or {})
    if settings.model not in MODEL_SPECS:
        raise ValueError(f"unknown model {settings.model!r}; choose one of {sorted(MODEL_SPECS)}")
    downloader = Downloader.bind(settings.model)
    model = ModelDeployment.bind(
        settings.model,
        weights_path=settings.weights_path,
        compute_dtype=settings.compute_dtype,
        intra_op_threads=settings.intra_op_threads,
        inter_op_threads=settings.inter_op_threads,
    )
    return ImageTagger.bind(downloader, model, settings.model)


app = build_app()
