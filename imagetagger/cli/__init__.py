"""The ``imagetagger`` command: tag local files, or run the Serve application.

One module per command: ``predict`` (tag files in this process), ``serve`` (run the
Serve app in the foreground), ``tag`` (tag a collection with Ray Data). Nothing here
imports Ray, TensorFlow or NumPy at module level: ``--help`` and argument errors
answer at once.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import yaml

from imagetagger.cli import predict, serve, tag
from imagetagger.cli.args import parse_port
from imagetagger.cli.predict import PREDICT_BATCH_SIZE, predict_files
from imagetagger.cli.serve import resolve_port, run_foreground
from imagetagger.environment import MODEL_ENV, PORT_ENV, RUNTIME_ENV
from imagetagger.models.options import DEFAULT_MODEL

__all__ = [
    "DEFAULT_MODEL",
    "MODEL_ENV",
    "PORT_ENV",
    "PREDICT_BATCH_SIZE",
    "RUNTIME_ENV",
    "build_parser",
    "main",
    "parse_port",
    "predict_files",
    "resolve_port",
    "run_foreground",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imagetagger", description="Tag images with ImageNet-1K labels."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    predict.add_parser(commands)
    serve.add_parser(commands)
    tag.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        print(f"imagetagger {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
