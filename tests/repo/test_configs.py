"""The Serve configs and the KubeRay manifest: valid for Ray, for our settings, and in sync.

Every config is checked the way Serve will read it (``ServeDeploySchema``) and the way
our code will (``ModelOptions`` and each deployment's settings model), so a typo fails
here rather than at deploy time. The manifest's ``serveConfigV2`` is regenerated in
memory and compared with the committed file.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
import ray
import yaml
from pydantic import BaseModel
from ray.serve.schema import ServeDeploySchema

from imagetagger.models.options import ModelOptions
from imagetagger.models.specs import MODEL_SPECS
from imagetagger.settings import DownloaderSettings, IngressSettings, ModelSettings
from tests.paths import REPO_ROOT

ROOT = REPO_ROOT
SERVE_CONFIG = ROOT / "serve_config.yaml"
GPU_CONFIG = ROOT / "configs" / "serve_gpu.yaml"
MANIFEST = ROOT / "configs" / "kuberay" / "rayservice.yaml"
# KubeRay's RayService CRD schema (v1.6.1), pod templates left free-form (tests/data/README.md).
CRD_SCHEMA = ROOT / "tests" / "data" / "kuberay" / "rayservice-v1.6.1.schema.json"
PRESETS = sorted((ROOT / "configs" / "models").glob("*.yaml"))
SETTINGS: dict[str, type[BaseModel]] = {
    "ImageTagger": IngressSettings,
    "Downloader": DownloaderSettings,
    "ModelDeployment": ModelSettings,
}
# CPUs a config is meant to fit when every deployment runs at its maximum replicas.
CPU_BUDGETS = {
    "serve_config.yaml": 2.0,  # the local default: a 2-core machine (README)
    "efficientnet_lite0.yaml": 1.0,
    "efficientnet_b3.yaml": 4.0,
}


def _load_generator() -> ModuleType:
    path = ROOT / "scripts" / "make_kuberay.py"
    spec = importlib.util.spec_from_file_location("make_kuberay", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


make_kuberay = _load_generator()


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _manifest() -> dict[str, Any]:
    return _yaml(MANIFEST)


def _serve_config_v2() -> dict[str, Any]:
    return yaml.safe_load(_manifest()["spec"]["serveConfigV2"])


SERVE_CONFIGS: dict[str, Any] = {
    "serve_config.yaml": lambda: _yaml(SERVE_CONFIG),
    "configs/serve_gpu.yaml": lambda: _yaml(GPU_CONFIG),
    "rayservice.yaml:serveConfigV2": _serve_config_v2,
    **{f"configs/models/{p.name}": (lambda p=p: _yaml(p)) for p in PRESETS},
}


def _deployments(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    (app,) = config["applications"]
    return {d["name"]: d for d in app["deployments"]}


def _max_replicas(deployment: dict[str, Any]) -> int:
    autoscaling = deployment.get("autoscaling_config")
    if autoscaling:
        return autoscaling["max_replicas"]
    return deployment.get("num_replicas", 1)


def test_presets_exist() -> None:
    assert {p.name for p in PRESETS} == {"efficientnet_b3.yaml", "efficientnet_lite0.yaml"}


# --- every Serve config ---------------------------------------------------------------


@pytest.fixture(params=sorted(SERVE_CONFIGS))
def serve_config(request: pytest.FixtureRequest) -> dict[str, Any]:
    return SERVE_CONFIGS[request.param]()


def test_config_is_a_valid_serve_deploy_config(serve_config: dict[str, Any]) -> None:
    ServeDeploySchema.model_validate(serve_config)


def test_config_has_the_imagetagger_app(serve_config: dict[str, Any]) -> None:
    (app,) = serve_config["applications"]
    assert app["name"] == "imagetagger"
    assert app["route_prefix"] == "/"
    assert app["import_path"] == "deployments.app:build_app"
    args = ModelOptions.model_validate(app["args"])
    assert args.model in MODEL_SPECS
    assert [d["name"] for d in app["deployments"]] == [
        "ImageTagger",
        "Downloader",
        "ModelDeployment",
    ]


def test_user_configs_validate_against_the_settings(serve_config: dict[str, Any]) -> None:
    for name, deployment in _deployments(serve_config).items():
        assert "user_config" in deployment, f"{name}: tunables belong in user_config"
        SETTINGS[name].model_validate(deployment["user_config"])


def test_model_replica_can_fill_a_batch(serve_config: dict[str, Any]) -> None:
    """Serve never sends a replica more than max_ongoing_requests, so a smaller value
    would cap every batch below max_batch_size."""
    model = _deployments(serve_config)["ModelDeployment"]
    assert model["max_ongoing_requests"] >= model["user_config"]["max_batch_size"]


def test_the_ingress_admits_more_than_it_takes_in_flight(serve_config: dict[str, Any]) -> None:
    """A flood must reach the replica and get its JSON 503 at once; with Serve's own limit
    at or below max_in_flight, requests would queue in front of the replica instead."""
    ingress = _deployments(serve_config)["ImageTagger"]
    in_flight = ingress["user_config"].get("max_in_flight", 256)
    assert ingress["max_ongoing_requests"] > in_flight


def test_only_the_model_asks_for_a_gpu(serve_config: dict[str, Any]) -> None:
    for name, deployment in _deployments(serve_config).items():
        options = deployment["ray_actor_options"]
        assert options["num_cpus"] > 0, name
        if name != "ModelDeployment":
            assert options.get("num_gpus", 0) == 0, name


@pytest.mark.parametrize("name", sorted(CPU_BUDGETS))
def test_cpu_configs_fit_their_machine(name: str) -> None:
    path = SERVE_CONFIG if name == "serve_config.yaml" else ROOT / "configs" / "models" / name
    deployments = _deployments(_yaml(path)).values()
    assert all(d["ray_actor_options"].get("num_gpus", 0) == 0 for d in deployments)
    needed = sum(d["ray_actor_options"]["num_cpus"] * _max_replicas(d) for d in deployments)
    assert needed <= CPU_BUDGETS[name]


def test_presets_serve_the_model_they_are_named_after() -> None:
    for path in PRESETS:
        (app,) = _yaml(path)["applications"]
        assert app["args"]["model"] == path.stem


def test_local_default_serves_an_offline_model() -> None:
    (app,) = _yaml(SERVE_CONFIG)["applications"]
    assert MODEL_SPECS[app["args"]["model"]].weights_package is not None


def test_gpu_config() -> None:
    config = _yaml(GPU_CONFIG)
    (app,) = config["applications"]
    args = ModelOptions.model_validate(app["args"])
    assert args.model == "efficientnet_b3"
    assert config["http_options"] == {"host": "0.0.0.0", "port": 8000}
    deployments = _deployments(config)
    model = deployments["ModelDeployment"]
    assert model["ray_actor_options"] == {"num_gpus": 1, "num_cpus": 2}
    assert model["user_config"]["max_batch_size"] >= 32
    local = _deployments(_yaml(SERVE_CONFIG))
    for name in ("ImageTagger", "Downloader"):  # CPU work scales out wider than locally
        assert _max_replicas(deployments[name]) > _max_replicas(local[name])


# --- the KubeRay manifest -------------------------------------------------------------


def test_manifest_serve_config_is_generated_from_the_gpu_config() -> None:
    text = MANIFEST.read_text()
    regenerated = make_kuberay.render_manifest(text, _yaml(GPU_CONFIG))
    assert regenerated == text, "configs/kuberay/rayservice.yaml is stale: run `make kuberay`"


def test_serve_config_v2_carries_the_gpu_applications() -> None:
    gpu = _yaml(GPU_CONFIG)
    v2 = _serve_config_v2()
    assert set(v2) == {"proxy_location", "logging_config", "applications"}
    assert v2["applications"] == gpu["applications"]
    assert v2["logging_config"] == gpu["logging_config"]


def test_manifest_top_level() -> None:
    manifest = _manifest()
    assert manifest["apiVersion"] == "ray.io/v1"
    assert manifest["kind"] == "RayService"
    assert manifest["metadata"]["name"] == "imagetagger"
    assert isinstance(manifest["spec"]["serveConfigV2"], str)
    cluster = manifest["spec"]["rayClusterConfig"]
    assert cluster["rayVersion"] == ray.__version__
    assert cluster["enableInTreeAutoscaling"] is True
    resources = cluster["autoscalerOptions"]["resources"]
    assert resources["requests"] and resources["limits"]


def _strict(schema: Any) -> Any:
    """The CRD schema refusing unknown fields: Kubernetes would silently drop a typo."""
    if isinstance(schema, dict):
        schema = {key: _strict(value) for key, value in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        schema = [_strict(item) for item in schema]
    return schema


def _crd_validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(_strict(json.loads(CRD_SCHEMA.read_text())))


def test_manifest_validates_against_the_rayservice_crd() -> None:
    errors = [
        f"{list(e.absolute_path)}: {e.message}" for e in _crd_validator().iter_errors(_manifest())
    ]
    assert errors == []


@pytest.mark.parametrize(
    ("field", "value"),
    [("authOptions", {"mode": "tokens"}), ("authOption", {"mode": "token"})],
)
def test_the_crd_check_catches_a_bad_or_misspelt_field(field: str, value: Any) -> None:
    manifest = copy.deepcopy(_manifest())
    cluster = manifest["spec"]["rayClusterConfig"]
    cluster.pop("authOptions")
    cluster[field] = value
    assert not _crd_validator().is_valid(manifest)


def test_cluster_requires_token_authentication() -> None:
    """Ray's cluster is never left open (docs/SECURITY.md); on KubeRay: authOptions.mode token."""
    assert _manifest()["spec"]["rayClusterConfig"]["authOptions"] == {"mode": "token"}


def test_every_pod_reads_the_optional_api_key_hashes() -> None:
    """Any pod may host an ingress replica, so each reads the same (optional) Secret."""
    expected = {
        "name": "IMAGETAGGER_API_KEY_HASHES",
        "valueFrom": {
            "secretKeyRef": {"name": "imagetagger-api-keys", "key": "hashes", "optional": True}
        },
    }
    for name, pod in _pod_specs(_manifest()["spec"]["rayClusterConfig"]):
        for container in pod["containers"]:
            assert expected in container["env"], name


def _pod_specs(cluster: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    groups = [("head", cluster["headGroupSpec"])]
    groups += [(g["groupName"], g) for g in cluster["workerGroupSpecs"]]
    return [(name, group["template"]["spec"]) for name, group in groups]


def test_every_container_has_image_and_resources() -> None:
    cluster = _manifest()["spec"]["rayClusterConfig"]
    images = set()
    for name, pod in _pod_specs(cluster):
        assert pod["containers"], name
        for container in pod["containers"]:
            assert container["name"], name
            images.add(container["image"])
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][kind]), (name, kind)
            mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
            assert "/dev/shm" in mounts, name
    assert len(images) == 1  # one image: Ray needs the same versions on every node


def test_head_group() -> None:
    head = _manifest()["spec"]["rayClusterConfig"]["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    assert head["rayStartParams"]["dashboard-host"] == "0.0.0.0"
    (container,) = head["template"]["spec"]["containers"]
    ports = {p["containerPort"]: p["name"] for p in container["ports"]}
    assert ports == {6379: "gcs-server", 8265: "dashboard", 10001: "client", 8000: "serve"}


def test_worker_groups_have_the_required_fields() -> None:
    groups = _manifest()["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    assert [g["groupName"] for g in groups] == ["cpu", "gpu"]
    for group in groups:
        assert {"groupName", "replicas", "minReplicas", "maxReplicas", "rayStartParams"} <= set(
            group
        )
        assert isinstance(group["rayStartParams"], dict)
        assert group["template"]["spec"]["containers"]
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]


def _group(name: str) -> dict[str, Any]:
    groups = _manifest()["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    return next(g for g in groups if g["groupName"] == name)


def _cpus(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def test_gpu_group_fits_the_model_replicas() -> None:
    group = _group("gpu")
    pod = group["template"]["spec"]
    (container,) = pod["containers"]
    limits = container["resources"]["limits"]
    assert container["resources"]["requests"]["nvidia.com/gpu"] == limits["nvidia.com/gpu"]
    gpus_per_pod = int(limits["nvidia.com/gpu"])
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    model = _deployments(_serve_config_v2())["ModelDeployment"]
    options = model["ray_actor_options"]
    replicas_per_pod = gpus_per_pod // options["num_gpus"]
    assert replicas_per_pod >= 1
    assert _cpus(limits["cpu"]) >= options["num_cpus"] * replicas_per_pod
    assert group["maxReplicas"] * replicas_per_pod >= model["autoscaling_config"]["max_replicas"]
    assert group["minReplicas"] * replicas_per_pod >= model["autoscaling_config"]["min_replicas"]


def test_cpu_group_fits_the_cpu_deployments() -> None:
    group = _group("cpu")
    (container,) = group["template"]["spec"]["containers"]
    assert "nvidia.com/gpu" not in container["resources"]["limits"]
    pod_cpus = _cpus(container["resources"]["limits"]["cpu"])
    deployments = _deployments(_serve_config_v2())
    cpu_work = [deployments["ImageTagger"], deployments["Downloader"]]
    assert all(pod_cpus >= d["ray_actor_options"]["num_cpus"] for d in cpu_work)
    at_most = sum(d["ray_actor_options"]["num_cpus"] * _max_replicas(d) for d in cpu_work)
    assert group["maxReplicas"] * pod_cpus >= at_most


# --- the generator --------------------------------------------------------------------

SMALL_MANIFEST = """\
# header comment
apiVersion: ray.io/v1
kind: RayService
spec:
  serveConfigV2: |
    applications: []

    stale: true
  rayClusterConfig:  # kept
    rayVersion: "2.60.0"
"""


def test_render_replaces_only_the_block_and_is_idempotent() -> None:
    config = {"http_options": {"port": 1}, "applications": [{"name": "a", "import_path": "m:x"}]}
    rendered = make_kuberay.render_manifest(SMALL_MANIFEST, config)
    assert rendered == (
        "# header comment\n"
        "apiVersion: ray.io/v1\n"
        "kind: RayService\n"
        "spec:\n"
        "  serveConfigV2: |\n"
        "    applications:\n"
        "    - name: a\n"
        "      import_path: m:x\n"
        "  rayClusterConfig:  # kept\n"
        '    rayVersion: "2.60.0"\n'
    )
    assert make_kuberay.render_manifest(rendered, config) == rendered


@pytest.mark.parametrize("text", ["spec:\n  other: 1\n", SMALL_MANIFEST + SMALL_MANIFEST])
def test_render_needs_exactly_one_block(text: str) -> None:
    with pytest.raises(ValueError, match=re.escape("expected one 'serveConfigV2: |' line")):
        make_kuberay.render_manifest(text, {"applications": [{"name": "a"}]})


def test_render_refuses_a_config_without_applications() -> None:
    with pytest.raises(ValueError, match="no applications"):
        make_kuberay.render_manifest(SMALL_MANIFEST, {"http_options": {}})


def test_check_mode_reports_a_stale_manifest(tmp_path: Path) -> None:
    manifest = tmp_path / "rayservice.yaml"
    manifest.write_text(SMALL_MANIFEST)
    args = ["--serve-config", str(GPU_CONFIG), "--manifest", str(manifest)]
    assert make_kuberay.main([*args, "--check"]) == 1
    assert manifest.read_text() == SMALL_MANIFEST  # --check writes nothing
    assert make_kuberay.main(args) == 0
    assert yaml.safe_load(yaml.safe_load(manifest.read_text())["spec"]["serveConfigV2"]) == {
        key: _yaml(GPU_CONFIG)[key] for key in ("proxy_location", "logging_config", "applications")
    }
    assert make_kuberay.main([*args, "--check"]) == 0


def test_every_ray_container_runs_in_the_serving_mode() -> None:
    from imagetagger.serving.serving_env import SERVING_ENV

    cluster = _manifest()["spec"]["rayClusterConfig"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    for group in groups:
        for container in group["template"]["spec"]["containers"]:
            env = {item["name"]: item.get("value") for item in container.get("env", [])}
            assert {key: env.get(key) for key in SERVING_ENV} == SERVING_ENV, container["name"]


# --- draining on Kubernetes -------------------------------------------------------------

DRAIN_ENV = (
    "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S",
    "RAY_SERVE_PROXY_MIN_DRAINING_PERIOD_S",
)


def test_every_pod_drains_for_the_same_period_and_its_grace_period_covers_it() -> None:
    """A stopping ingress replica finishes its requests (graceful_shutdown_timeout_s), and
    a node's proxy then keeps answering for the drain period while the Service drops the
    pod; Kubernetes must not SIGKILL the pod before both are done."""
    from ray.serve._private.constants import RAY_SERVE_DIRECT_INGRESS_SHUTDOWN_BUFFER_S

    ingress = _deployments(_serve_config_v2())["ImageTagger"]
    graceful = ingress["graceful_shutdown_timeout_s"]
    request_timeout = ingress["user_config"]["request_timeout_s"]
    drains = set()
    for name, pod in _pod_specs(_manifest()["spec"]["rayClusterConfig"]):
        (container,) = pod["containers"]
        env = {item["name"]: item.get("value") for item in container["env"]}
        values = {float(env[key]) for key in DRAIN_ENV}
        assert len(values) == 1, name  # the replica's and the proxy's drain agree
        drains |= values
        assert pod["terminationGracePeriodSeconds"] >= graceful + max(values) + 5, name
    (drain,) = drains  # every pod alike
    assert 0 < drain < 30  # shorter than Ray's 30 s default, which outlives k8s' 30 s grace
    assert graceful >= request_timeout  # a request in flight is not cut short
    # Serve floors the ingress's timeout at drain + buffer; ours is above, so it holds.
    assert graceful >= drain + RAY_SERVE_DIRECT_INGRESS_SHUTDOWN_BUFFER_S


def test_drain_env_names_are_the_ones_ray_reads() -> None:
    import inspect

    from ray.serve._private import constants

    source = inspect.getsource(constants)
    for key in DRAIN_ENV:
        assert f'"{key}"' in source, key


# --- the NetworkPolicy beside the manifest ----------------------------------------------

NETWORK_POLICY = ROOT / "configs" / "kuberay" / "networkpolicy.yaml"


def test_network_policy_covers_every_ray_pod_and_opens_only_the_service_port() -> None:
    policy = _yaml(NETWORK_POLICY)
    assert (policy["apiVersion"], policy["kind"]) == ("networking.k8s.io/v1", "NetworkPolicy")
    selector = policy["spec"]["podSelector"]["matchLabels"]
    cluster = _manifest()["spec"]["rayClusterConfig"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    for group in groups:  # the policy selects every pod of the RayService
        labels = group["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), labels
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    rules = policy["spec"]["ingress"]
    from_anywhere = [rule for rule in rules if "from" not in rule]
    assert from_anywhere == [{"ports": [{"protocol": "TCP", "port": 8000}]}]
    own_pods = [
        rule for rule in rules if rule.get("from") == [{"podSelector": {"matchLabels": selector}}]
    ]
    assert own_pods == [{"from": [{"podSelector": {"matchLabels": selector}}]}]  # all ports
    serve_ports = {
        port["containerPort"]
        for group in groups
        for container in group["template"]["spec"]["containers"]
        for port in container["ports"]
        if port["name"] == "serve"
    }
    assert serve_ports == {8000}
