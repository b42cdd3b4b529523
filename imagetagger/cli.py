"""The ``imagetagger`` command: tag local files, or run the Serve application.

``imagetagger predict`` loads the model in this process (no cluster) and prints one
JSON object per image in the API's response shape, so scripts can use the same parser
for both. ``imagetagger serve`` is the container's entry point: it applies the port
and model overrides to a Serve config and runs ``serve run`` on it in the foreground,
turning the SIGTERM of ``docker stop`` or Kubernetes into Serve's graceful shutdown.

Nothing here imports Ray, TensorFlow or NumPy at module level: ``--help`` and
argument errors answer at once.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

import yaml
from pydantic import TypeAdapter, ValidationError

from imagetagger.errors import ImageTaggerError, ImageTooLarge
from imagetagger.models.specs import MODEL_SPECS
from imagetagger.schemas import MinConf, Top
from imagetagger.settings import DownloaderSettings

if TYPE_CHECKING:
    from imagetagger.models.loader import Classifier

DEFAULT_MODEL = "efficientnet_lite2"
APP_IMPORT_PATH = "deployments.app:build_app"
MODEL_ENV = "IMAGETAGGER_MODEL"
PORT_ENV = "PORT"
PREDICT_BATCH_SIZE = 16

_TOP = TypeAdapter(Top)
_MINCONF = TypeAdapter(MinConf)


# --- argument types -------------------------------------------------------------------


def _constrained(adapter: TypeAdapter[Any]) -> Any:
    """An argparse ``type`` that applies the API's own bounds to a query-style value."""

    def parse(text: str) -> Any:
        try:
            return adapter.validate_python(text)
        except ValidationError as exc:
            raise argparse.ArgumentTypeError(exc.errors()[0]["msg"]) from None

    return parse


def parse_port(text: str) -> int:
    """A TCP port number, 1-65535."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be between 1 and 65535, got {port}")
    return port


def _model_name(text: str) -> str:
    if text not in MODEL_SPECS:
        raise argparse.ArgumentTypeError(
            f"unknown model {text!r}; choose one of {', '.join(sorted(MODEL_SPECS))}"
        )
    return text


# --- predict --------------------------------------------------------------------------


def _read_image_file(path: str, max_bytes: int) -> bytes:
    """The file's bytes; the API's upload size limit applies here too."""
    with open(path, "rb") as file:
        data = file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ImageTooLarge()
    return data


def _file_error(exc: OSError) -> dict[str, str]:
    error_type = "FileNotFound" if isinstance(exc, FileNotFoundError) else "UnreadableFile"
    return {"type": error_type, "detail": exc.strerror or str(exc)}


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def predict_files(
    classifier: Classifier,
    paths: Sequence[str],
    *,
    top: int | None,
    minconf: float | None,
    out: TextIO,
) -> int:
    """Print one JSON line per path, in order; return how many failed.

    Images run through the model in batches of ``PREDICT_BATCH_SIZE``, as the service
    batches them, and each line is flushed as soon as its batch is done.
    """
    import numpy as np

    from imagetagger.images import prepare_image
    from imagetagger.predictions import select_predictions

    limits = DownloaderSettings()
    spec = classifier.spec
    failures = 0
    for chunk in _chunks(paths, PREDICT_BATCH_SIZE):
        results: list[dict[str, Any]] = []
        images = []
        for path in chunk:
            try:
                data = _read_image_file(path, limits.max_image_bytes)
                images.append(
                    prepare_image(
                        data,
                        size=spec.input_size,
                        crop_padding=spec.crop_padding,
                        max_pixels=limits.max_image_pixels,
                    )
                )
                results.append({"filename": path})
            except OSError as exc:
                results.append({"filename": path, "error": _file_error(exc)})
            except ImageTaggerError as exc:
                results.append({"filename": path, "error": exc.to_dict()})
        if images:
            probabilities = iter(classifier.predict_proba(np.stack(images)))
            for result in results:
                if "error" not in result:
                    result["predictions"] = select_predictions(
                        next(probabilities), top=top, minconf=minconf
                    )
        for result in results:
            failures += "error" in result
            out.write(json.dumps(result) + "\n")
        out.flush()
    return failures


def _predict(args: argparse.Namespace) -> int:
    from imagetagger.errors import ModelLoadError
    from imagetagger.tfconfig import configure_tensorflow

    configure_tensorflow()
    from imagetagger.models.loader import load_classifier

    try:
        classifier = load_classifier(args.model, weights_path=args.weights_path)
    except ModelLoadError as exc:
        print(f"imagetagger: cannot load {args.model}: {exc}", file=sys.stderr)
        return 1
    failures = predict_files(
        classifier, args.paths, top=args.top, minconf=args.minconf, out=sys.stdout
    )
    return 1 if failures else 0


# --- serve ----------------------------------------------------------------------------


def resolve_port(cli_port: int | None, environ: Mapping[str, str]) -> int | None:
    """``--port``, else ``$PORT`` when set and non-empty, else None (keep the file's)."""
    if cli_port is not None:
        return cli_port
    text = environ.get(PORT_ENV, "").strip()
    if not text:
        return None
    try:
        return parse_port(text)
    except argparse.ArgumentTypeError as exc:
        raise ValueError(f"${PORT_ENV}: {exc}") from None


def apply_port(config: dict[str, Any], port: int | None) -> dict[str, Any]:
    """A copy of the Serve config with ``http_options.port`` set (None: unchanged)."""
    result = copy.deepcopy(config)
    if port is not None:
        http_options = result.get("http_options") or {}
        result["http_options"] = {**http_options, "port": port}
    return result


def apply_model(config: dict[str, Any], model: str | None) -> dict[str, Any]:
    """A copy of the Serve config whose imagetagger applications serve ``model``.

    A container image bakes one model's weights in; ``$IMAGETAGGER_MODEL`` makes the
    config serve that model, whatever the file says. None leaves the config unchanged.
    """
    result = copy.deepcopy(config)
    if model is None:
        return result
    _model_name_or_raise(model)
    apps = [
        app for app in result.get("applications") or [] if app.get("import_path") == APP_IMPORT_PATH
    ]
    if not apps:
        raise ValueError(f"the config has no application with import_path {APP_IMPORT_PATH}")
    for app in apps:
        app["args"] = {**(app.get("args") or {}), "model": model}
    return result


def apply_allowed_networks(config: dict[str, Any], networks: Sequence[str]) -> dict[str, Any]:
    """A copy of the Serve config whose Downloaders also fetch from ``networks`` (CIDRs).

    For trying the service on local files: ``--allow-network 127.0.0.1/32`` lets it
    fetch from a file server on this machine, which the SSRF guard blocks by default.
    """
    result = copy.deepcopy(config)
    if not networks:
        return result
    allowed = DownloaderSettings(allowed_networks=list(networks)).allowed_networks
    for app in result.get("applications") or []:
        for deployment in app.get("deployments") or []:
            if deployment.get("name") == "Downloader":
                user_config = deployment.setdefault("user_config", {}) or {}
                existing = list(user_config.get("allowed_networks") or [])
                user_config["allowed_networks"] = existing + [
                    n for n in allowed if n not in existing
                ]
                deployment["user_config"] = user_config
    return result


def _model_name_or_raise(model: str) -> None:
    try:
        _model_name(model)
    except argparse.ArgumentTypeError as exc:
        raise ValueError(str(exc)) from None


def _find_serve_executable() -> str:
    """``serve`` on PATH, else the one installed beside this interpreter."""
    found = shutil.which("serve")
    if found:
        return found
    sibling = Path(sys.executable).with_name("serve")
    if sibling.is_file() and os.access(sibling, os.X_OK):
        return str(sibling)
    raise FileNotFoundError("the Ray Serve CLI `serve` is not on PATH; install ray[serve]")


def run_foreground(argv: Sequence[str]) -> int:
    """Run ``argv`` until it exits, forwarding SIGTERM/SIGINT; return its exit status.

    ``serve run`` shuts Serve down gracefully (draining replicas) on SIGINT but dies at
    once on SIGTERM, so the first signal is forwarded as SIGINT and any later one as
    SIGTERM, for an operator who does not want to wait. The child gets its own process
    group, so a terminal's Ctrl-C reaches it once, through here, not twice.
    """
    child: subprocess.Popen[bytes] | None = None
    received = 0  # signals that arrived here
    forwarded = 0  # signals passed on to the child

    def forward_pending() -> None:
        nonlocal forwarded
        while child is not None and forwarded < received:
            forwarded += 1
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signal.SIGINT if forwarded == 1 else signal.SIGTERM)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal received
        received += 1
        forward_pending()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        child = subprocess.Popen(argv, process_group=0)
        forward_pending()  # a signal that came while the child was starting
        status = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 128 - status if status < 0 else status


def _serve(args: argparse.Namespace) -> int:
    config = yaml.safe_load(Path(args.config).read_text())
    if not isinstance(config, dict):
        raise ValueError(f"{args.config}: not a Serve config (expected a mapping)")
    port = resolve_port(args.port, os.environ)
    model = args.model or os.environ.get(MODEL_ENV) or None
    effective = apply_allowed_networks(
        apply_model(apply_port(config, port), model), args.allow_network
    )
    serve = _find_serve_executable()
    with tempfile.TemporaryDirectory(prefix="imagetagger-serve-") as tmp:
        path = Path(tmp) / "serve_config.yaml"
        path.write_text(yaml.safe_dump(effective, sort_keys=False))
        return run_foreground([serve, "run", str(path)])


# --- entry point ----------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imagetagger", description="Tag images with ImageNet-1K labels."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    models = ", ".join(sorted(MODEL_SPECS))

    predict = commands.add_parser(
        "predict",
        help="tag local image files (one JSON line per file)",
        description="Tag local image files; prints one JSON object per file, in order. "
        "Exit status 1 when any file failed.",
    )
    predict.add_argument("paths", nargs="+", metavar="PATH", help="image files")
    predict.add_argument(
        "--model",
        type=_model_name,
        default=os.environ.get(MODEL_ENV) or DEFAULT_MODEL,
        help=f"one of {models} (default: ${MODEL_ENV}, else {DEFAULT_MODEL})",
    )
    predict.add_argument(
        "--weights-path", default=None, help="local weights file (efficientnet_b3 offline)"
    )
    predict.add_argument("--top", type=_constrained(_TOP), default=None, help="1-1000 labels")
    predict.add_argument(
        "--minconf", type=_constrained(_MINCONF), default=None, help="smallest confidence, 0-1"
    )
    predict.set_defaults(handler=_predict)

    serve = commands.add_parser(
        "serve",
        help="run the Serve application in the foreground",
        description="Run `serve run` on CONFIG with the port and model overrides applied; "
        "SIGTERM shuts Serve down gracefully.",
    )
    serve.add_argument("--config", required=True, help="Serve config YAML")
    serve.add_argument(
        "--port",
        type=parse_port,
        default=None,
        help=f"HTTP port (default: ${PORT_ENV}, else the config's http_options.port)",
    )
    serve.add_argument(
        "--model",
        type=_model_name,
        default=None,
        help=f"model to serve (default: ${MODEL_ENV}, else the config's args.model)",
    )
    serve.add_argument(
        "--allow-network",
        action="append",
        default=[],
        metavar="CIDR",
        help="also fetch images from this network, e.g. 127.0.0.1/32 for local files "
        "(repeatable; added to the Downloader's allowed_networks)",
    )
    serve.set_defaults(handler=_serve)
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
