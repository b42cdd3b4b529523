"""The application builder: compose ImageTagger -> (Downloader, ModelDeployment).

``serve_config.yaml`` points at :func:`build_app` with ``args``; resources, replica
counts and ``user_config`` of each deployment live in that YAML, not here.
``app`` is the same application with default arguments, for ``serve run deployments.app:app``.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from ray.serve import Application

from deployments.downloader import Downloader
from deployments.ingress import ImageTagger
from deployments.model import ModelDeployment
from imagetagger.models.options import ModelOptions


def build_app(args: dict[str, Any] | None = None) -> Application:
    try:
        # The library's model options, so the app, the `imagetagger` commands and the bulk
        # job validate them the same way.
        settings = ModelOptions.model_validate(args or {})
    except ValidationError as exc:  # a short message in `serve run` output, not a dump
        raise ValueError(f"invalid application args: {exc}") from None
    downloader = Downloader.bind(settings.model)
    model = ModelDeployment.bind(
        settings.model, settings.runtime_options(), weights_path=settings.weights_path
    )
    return ImageTagger.bind(downloader, model, settings.model)


app = build_app()
