"""A Serve config (``serve_config.yaml``) with overrides: the one way to change one.

``imagetagger serve`` (port, model, runtime, precision, allowed networks), the tests
(a loopback host and port, the test image server's network) and the benchmarks start
from a committed config and change only what they must, through these functions. Each
returns a changed copy and never touches its input; an override that cannot apply (no
imagetagger application, an unknown model) is a ValueError, not a config that
silently ignores it.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from imagetagger.limits import MAX_IN_FLIGHT, haproxy_maxconn
from imagetagger.models.options import check_model_name, check_runtime_name
from imagetagger.settings import DownloaderSettings

APP_IMPORT_PATH = "deployments.app:build_app"

ServeConfig = dict[str, Any]


def load_serve_config(path: str | Path) -> ServeConfig:
    """The Serve config in the YAML file ``path``."""
    config = yaml.safe_load(Path(path).read_text())
    if not isinstance(config, dict):
        raise ValueError(f"{path}: not a Serve config (expected a mapping)")
    return config


def apply_http(
    config: ServeConfig, *, host: str | None = None, port: int | None = None
) -> ServeConfig:
    """A copy with ``http_options.host`` / ``.port`` set (None: the file's)."""
    result = copy.deepcopy(config)
    changes = {key: value for key, value in (("host", host), ("port", port)) if value is not None}
    if changes:
        result["http_options"] = {**(result.get("http_options") or {}), **changes}
    return result


def apply_model(config: ServeConfig, model: str | None) -> ServeConfig:
    """A copy of the Serve config whose imagetagger applications serve ``model``.

    A container image bakes one model's weights in; ``$IMAGETAGGER_MODEL`` makes the
    config serve that model, whatever the file says. None leaves the config unchanged.
    """
    if model is None:
        return copy.deepcopy(config)
    return apply_app_arg(config, "model", check_model_name(model))


def apply_runtime(config: ServeConfig, runtime: str | None) -> ServeConfig:
    """A copy of the Serve config whose imagetagger applications run on ``runtime``."""
    if runtime is None:
        return copy.deepcopy(config)
    return apply_app_arg(config, "runtime", check_runtime_name(runtime))


def apply_app_args(
    config: ServeConfig,
    *,
    model: str | None,
    runtime: str | None,
    precision: str | None = None,
) -> ServeConfig:
    """The model, runtime and precision overrides (None: keep the config's)."""
    result = apply_runtime(apply_model(config, model), runtime)
    return result if precision is None else apply_app_arg(result, "precision", precision)


def apply_app_arg(config: ServeConfig, key: str, value: Any) -> ServeConfig:
    """A copy whose imagetagger applications (``import_path`` :data:`APP_IMPORT_PATH`)
    have ``args[key] = value``."""
    result = copy.deepcopy(config)
    apps = [
        app for app in result.get("applications") or [] if app.get("import_path") == APP_IMPORT_PATH
    ]
    if not apps:
        raise ValueError(f"the config has no application with import_path {APP_IMPORT_PATH}")
    for app in apps:
        app["args"] = {**(app.get("args") or {}), key: value}
    return result


def apply_allowed_networks(config: ServeConfig, networks: Sequence[str]) -> ServeConfig:
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


def ingress_maxconn(config: ServeConfig) -> int | None:
    """HAProxy's ``maxconn`` for the config's ingress (``ImageTagger``), between its
    ``max_in_flight`` and ``max_ongoing_requests`` (imagetagger/limits.py); None when no
    imagetagger application sets ``max_ongoing_requests``. ValueError when none fits."""
    found = []
    for app in config.get("applications") or []:
        if app.get("import_path") != APP_IMPORT_PATH:
            continue
        for deployment in app.get("deployments") or []:
            if deployment.get("name") == "ImageTagger" and "max_ongoing_requests" in deployment:
                in_flight = (deployment.get("user_config") or {}).get("max_in_flight")
                ongoing = int(deployment["max_ongoing_requests"])
                found.append(haproxy_maxconn(int(in_flight or MAX_IN_FLIGHT), ongoing))
    return min(found) if found else None
