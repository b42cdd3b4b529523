"""Argument types and options shared by the ``imagetagger`` commands."""

from __future__ import annotations

import argparse
import os
from typing import Any

from pydantic import TypeAdapter, ValidationError

from imagetagger.environment import (
    MODEL_ENV,
    RUNTIME_ENV,
    env_model,
    env_runtime,
    parse_port_number,
)
from imagetagger.models.options import (
    DEFAULT_MODEL,
    DEFAULT_RUNTIME,
    PRECISIONS,
    RUNTIMES,
    ModelOptions,
    check_model_name,
    check_runtime_name,
)
from imagetagger.models.specs import MODEL_SPECS
from imagetagger.schemas import MinConf, Top


def constrained(adapter: TypeAdapter[Any]) -> Any:
    """An argparse ``type`` that applies a pydantic type's bounds (the API's own, for a
    query-style value); a bad value exits 2 with pydantic's message and the value."""

    def parse(text: str) -> Any:
        try:
            return adapter.validate_python(text)
        except ValidationError as exc:
            message = exc.errors()[0]["msg"].removeprefix("Value error, ")
            if repr(text) not in message:
                message = f"{message}, got {text!r}"
            raise argparse.ArgumentTypeError(message) from None

    return parse


def parse_port(text: str) -> int:
    """A TCP port number, 1-65535 (an argparse ``type``)."""
    try:
        return parse_port_number(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def model_name(text: str) -> str:
    """A registered model (an argparse ``type``: a bad name exits 2 with the choices)."""
    try:
        return check_model_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def runtime_name(text: str) -> str:
    """A runtime (an argparse ``type``)."""
    try:
        return check_runtime_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def model_options(**values: Any) -> ModelOptions:
    """The options model from command-line values (None: the default), validated as the
    Serve app's ``args`` are; a bad combination is a ValueError of one line."""
    try:
        return ModelOptions(**{key: value for key, value in values.items() if value is not None})
    except ValidationError as exc:
        message = exc.errors()[0]["msg"]
        raise ValueError(message.removeprefix("Value error, ")) from None


def add_model_options(
    parser: argparse.ArgumentParser, *, defaults_from_env: bool, runtime_from_gpus: bool = False
) -> None:
    """``--model``, ``--runtime``, ``--precision``: from the environment (or built-in) or
    from the config. ``runtime_from_gpus``: ``--runtime`` defaults to None, for the
    caller to choose by the GPUs it was given (``imagetagger tag``)."""
    models = ", ".join(sorted(MODEL_SPECS))
    if defaults_from_env:
        parser.add_argument(
            "--model",
            type=model_name,
            default=env_model(os.environ) or DEFAULT_MODEL,
            help=f"one of {models} (default: ${MODEL_ENV}, else {DEFAULT_MODEL})",
        )
        if runtime_from_gpus:
            parser.add_argument(
                "--runtime",
                type=runtime_name,
                default=None,
                help=f"{' or '.join(RUNTIMES)} (default: ${RUNTIME_ENV}, else tensorflow "
                "with --gpus, litert without)",
            )
        else:
            parser.add_argument(
                "--runtime",
                type=runtime_name,
                default=env_runtime(os.environ) or DEFAULT_RUNTIME,
                help=f"one of {', '.join(RUNTIMES)} (default: ${RUNTIME_ENV}, "
                f"else {DEFAULT_RUNTIME})",
            )
        parser.add_argument(
            "--precision",
            choices=PRECISIONS,
            default="float32",
            help="litert only: int8 is faster, slightly less exact (docs/MODELS.md)",
        )
        return
    parser.add_argument(
        "--model",
        type=model_name,
        default=None,
        help=f"model to serve (default: ${MODEL_ENV}, else the config's args.model)",
    )
    parser.add_argument(
        "--runtime",
        type=runtime_name,
        default=None,
        help=f"{' or '.join(RUNTIMES)} (default: ${RUNTIME_ENV}, else the config's args.runtime)",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=None,
        help="litert only (default: the config's args.precision)",
    )


def add_selection_options(parser: argparse.ArgumentParser) -> None:
    """``--weights-path``, ``--top`` and ``--minconf``, with the API's own bounds."""
    parser.add_argument(
        "--weights-path", default=None, help="local weights file (efficientnet_b3 offline)"
    )
    parser.add_argument(
        "--top", type=constrained(TypeAdapter(Top)), default=None, help="1-1000 labels"
    )
    parser.add_argument(
        "--minconf",
        type=constrained(TypeAdapter(MinConf)),
        default=None,
        help="smallest confidence, 0-1",
    )


def add_labels_option(parser: argparse.ArgumentParser) -> None:
    """``--labels general``: add the general labels ("cat", "dog"), as the API's ``labels``."""
    parser.add_argument(
        "--labels",
        choices=("fine", "general"),
        default="fine",
        help="general: also answer general labels (cat, dog, vehicle), as /predictions?labels=",
    )
