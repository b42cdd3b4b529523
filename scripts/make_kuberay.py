"""Regenerate ``spec.serveConfigV2`` of the KubeRay manifest from the GPU Serve config.

The RayService carries the Serve config as a YAML string; writing it by hand would let
it drift from ``configs/serve_gpu.yaml``. This script rewrites only that block scalar in
``configs/kuberay/rayservice.yaml`` and keeps the rest of the file (and its comments)
as written. ``make kuberay`` runs it; ``--check`` exits 1 when the committed manifest is
stale. It needs PyYAML only, not imagetagger or Ray.

    python scripts/make_kuberay.py [--check]
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
SERVE_CONFIG = ROOT / "configs" / "serve_gpu.yaml"
MANIFEST = ROOT / "configs" / "kuberay" / "rayservice.yaml"

# The parts of a Serve config that KubeRay hands to the cluster. http_options are left
# out: KubeRay exposes port 8000 through its own Service, and Serve's defaults (host
# 0.0.0.0, port 8000) are what that Service expects.
SERVE_CONFIG_V2_KEYS = ("proxy_location", "logging_config", "applications")

_BLOCK_HEADER = re.compile(r"^(?P<indent> *)serveConfigV2: *\|[-+]? *$")


def serve_config_v2(serve_config: dict[str, Any]) -> str:
    """The serveConfigV2 YAML text for ``serve_config``."""
    if not serve_config.get("applications"):
        raise ValueError("the Serve config has no applications")
    selected = {key: serve_config[key] for key in SERVE_CONFIG_V2_KEYS if key in serve_config}
    return yaml.safe_dump(selected, sort_keys=False, default_flow_style=False, width=100)


def render_manifest(manifest_text: str, serve_config: dict[str, Any]) -> str:
    """``manifest_text`` with its ``serveConfigV2: |`` block replaced by ``serve_config``'s.

    The block runs from the header to the first non-blank line indented no deeper than
    the header; blank lines at its end are dropped, so rendering is idempotent.
    """
    lines = manifest_text.splitlines(keepends=True)
    headers = [i for i, line in enumerate(lines) if _BLOCK_HEADER.match(line.rstrip("\n"))]
    if len(headers) != 1:
        raise ValueError(f"expected one 'serveConfigV2: |' line, found {len(headers)}")
    start = headers[0]
    indent = len(_BLOCK_HEADER.match(lines[start].rstrip("\n")).group("indent"))
    end = start + 1
    while end < len(lines) and (
        not lines[end].strip() or len(lines[end]) - len(lines[end].lstrip(" ")) > indent
    ):
        end += 1
    pad = " " * (indent + 2)
    body = [
        f"{pad}{line}\n" if line else "\n" for line in serve_config_v2(serve_config).splitlines()
    ]
    header = f"{' ' * indent}serveConfigV2: |\n"
    return "".join([*lines[:start], header, *body, *lines[end:]])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve-config", type=Path, default=SERVE_CONFIG)
    parser.add_argument("--manifest", type=Path, default=MANIFEST)
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the manifest is stale; write nothing"
    )
    args = parser.parse_args(argv)

    serve_config = yaml.safe_load(args.serve_config.read_text())
    current = args.manifest.read_text()
    rendered = render_manifest(current, serve_config)
    if args.check:
        if rendered != current:
            print(f"{args.manifest} is stale; run `make kuberay`", file=sys.stderr)
            return 1
        return 0
    if rendered != current:
        args.manifest.write_text(rendered)
        print(f"updated {args.manifest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
