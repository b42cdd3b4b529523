"""Cut KubeRay's RayService CRD down to the schema the manifest test validates against.

The CRD is 1 MB, nearly all of it Kubernetes' PodTemplateSpec repeated. This keeps the
``v1`` openAPIV3Schema with every pod ``template`` (and ``status``) made free-form and
the descriptions dropped, about 16 KB, so tests/repo/test_configs.py can check every KubeRay
field of configs/kuberay/rayservice.yaml (``authOptions`` included) offline:

    curl -sLO https://raw.githubusercontent.com/ray-project/kuberay/v1.6.1/helm-chart/kuberay-operator/crds/ray.io_rayservices.yaml
    python scripts/prune_crd.py ray.io_rayservices.yaml \
      > tests/data/kuberay/rayservice-v1.6.1.schema.json

It needs PyYAML only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

FREE_FORM = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
PRUNED = frozenset({"template", "status"})


def prune(node: dict[str, Any]) -> dict[str, Any]:
    """``node`` without descriptions, its pod templates and status made free-form."""
    node = {key: value for key, value in node.items() if key != "description"}
    if "properties" in node:
        node["properties"] = {
            name: FREE_FORM if name in PRUNED else prune(child)
            for name, child in node["properties"].items()
        }
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            node[key] = prune(node[key])
    return node


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("crd", type=Path, help="ray.io_rayservices.yaml from KubeRay")
    args = parser.parse_args(argv)
    crd = yaml.safe_load(args.crd.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema = prune(version["schema"]["openAPIV3Schema"])
    json.dump(schema, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
