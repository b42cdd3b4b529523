"""The environment variables of this project: every name its code reads or sets, and how
the commands' ones are read.

One place for their names and parsing: ``imagetagger serve`` (the container's entry
point), the container's health check and ``imagetagger tag`` resolve them here, so a
value means the same thing to each. Standard library only: the health check and HAProxy's
wrapper import it. Other projects' variables stay with the code that sets them: Ray's and
Serve's (``RAY_*``, ``imagetagger/serving/serving_env.py``, ``host_resources.py``),
OpenTelemetry's (``OTEL_*``, ``imagetagger/tracing.py``), Keras's and TensorFlow's
(``KERAS_BACKEND``, ``TF_CPP_MIN_LOG_LEVEL``, ``imagetagger/tfconfig.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

MODEL_ENV = "IMAGETAGGER_MODEL"  # the model to serve or tag with
RUNTIME_ENV = "IMAGETAGGER_RUNTIME"  # litert or tensorflow
PORT_ENV = "PORT"  # the HTTP port (what platforms such as Cloud Run set)
HOST_ENV = "IMAGETAGGER_HOST"  # where the HTTP port listens (the container: 0.0.0.0)
PORT_FILE_ENV = "IMAGETAGGER_PORT_FILE"  # where serve writes the port it really uses
DEFAULT_HTTP_PORT = 8000


def parse_port_number(text: str) -> int:
    """A TCP port, 1-65535; ValueError otherwise."""
    try:
        port = int(text)
    except ValueError:
        raise ValueError(f"invalid port {text!r}") from None
    if not 1 <= port <= 65535:
        raise ValueError(f"port must be between 1 and 65535, got {port}")
    return port


def _value(environ: Mapping[str, str], name: str) -> str | None:
    """The variable's value, or None when it is unset or blank."""
    value = environ.get(name, "").strip()
    return value or None


def env_model(environ: Mapping[str, str]) -> str | None:
    return _value(environ, MODEL_ENV)


def env_runtime(environ: Mapping[str, str]) -> str | None:
    return _value(environ, RUNTIME_ENV)


def env_host(environ: Mapping[str, str]) -> str | None:
    return _value(environ, HOST_ENV)


def env_port(environ: Mapping[str, str]) -> int | None:
    """``$PORT`` when set; ValueError (naming the variable) when it is not a port."""
    text = _value(environ, PORT_ENV)
    if text is None:
        return None
    try:
        return parse_port_number(text)
    except ValueError as exc:
        raise ValueError(f"${PORT_ENV}: {exc}") from None


def write_port_file(environ: Mapping[str, str], port: int) -> None:
    """Tell a health check which port the service really uses (``$IMAGETAGGER_PORT_FILE``)."""
    path = _value(environ, PORT_FILE_ENV)
    if path:
        Path(path).write_text(f"{port}\n")


def written_port(environ: Mapping[str, str]) -> int | None:
    """The port in ``$IMAGETAGGER_PORT_FILE``; None before serve wrote it (or unusable)."""
    path = _value(environ, PORT_FILE_ENV)
    if path is None:
        return None
    try:
        return parse_port_number(Path(path).read_text().strip())
    except (OSError, ValueError):
        return None


# The models' weight files (read by imagetagger.models.specs, in the model's entry).
B3_WEIGHTS_ENV = "IMAGETAGGER_B3_WEIGHTS"  # a local efficientnet_b3 weights file (.h5)
CACHE_DIR_ENV = "IMAGETAGGER_CACHE_DIR"  # where weights are cached (default ~/.cache/...)

# API keys (imagetagger.api.auth): SHA-256 hashes, inline or in a file (docs/SECURITY.md).
API_KEY_HASHES_ENV = "IMAGETAGGER_API_KEY_HASHES"
API_KEY_HASHES_FILE_ENV = "IMAGETAGGER_API_KEY_HASHES_FILE"

# HAProxy as imagetagger serve runs it (imagetagger.serving.haproxy, which reads them).
HAPROXY_BINARY_ENV = "IMAGETAGGER_HAPROXY_BINARY"  # the real HAProxy
HAPROXY_BIND_ENV = "IMAGETAGGER_HAPROXY_BIND"  # host the service port binds (default: Ray's)
HAPROXY_HTTP_REQUEST_TIMEOUT_ENV = "IMAGETAGGER_HAPROXY_HTTP_REQUEST_TIMEOUT_S"
HAPROXY_CLIENT_TIMEOUT_ENV = "IMAGETAGGER_HAPROXY_CLIENT_TIMEOUT_S"
HAPROXY_SERVER_MAXCONN_ENV = "IMAGETAGGER_HAPROXY_SERVER_MAXCONN"
