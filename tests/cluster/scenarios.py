"""Multi-node scenarios on Ray's own ``ray.cluster_utils.Cluster``, one process each.

They cannot share the test session's ``ray.init`` cluster, so ``tests/cluster/test_cluster.py``
runs each here in a child process, which prints one JSON report on its last line and
the test asserts on it:

    python -m tests.cluster.scenarios node-loss    # a worker node lost under load
    python -m tests.cluster.scenarios autoscale    # the Downloader scales on its own

Both deploy ``serve_config.yaml``'s application in the product's serving mode (HAProxy
ingress, throughput mode), with ``proxy_location: HeadOnly`` (two proxies on one
machine would fight over one port), HTTP and the image server on loopback only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml

from imagetagger.serving.serving_env import isolated_serve_env, serving_environment
from tests import servers

# Before Ray is imported: Ray reads these at import and in the processes it starts.
os.environ.update(serving_environment(os.environ))
# Short: Ray adds a per-node folder and HAProxy's socket path is at most 97 bytes.
os.environ.update(isolated_serve_env(tempfile.mkdtemp(prefix="hx-", dir="/tmp")))

ROOT = Path(__file__).resolve().parents[2]
CHELSEA = ROOT / "tests" / "data" / "chelsea.jpg"
IMAGE_HOST = "127.0.0.2"
APP = "imagetagger"
DEPLOY_TIMEOUT_S = 240
CONTRACT_STATUSES = {400, 401, 403, 404, 413, 422, 429, 503}
CATS = {"tabby", "tiger_cat", "Egyptian_cat"}


# --- the cluster and the app -----------------------------------------------------------


@contextmanager
def cluster(head_cpus: float, workers: list[float]) -> Iterator[tuple[Any, list[Any]]]:
    """A head (with the custom resource ``head``) and worker nodes, all on this machine."""
    import ray
    from ray.cluster_utils import Cluster

    c = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": head_cpus,
            "resources": {"head": 1},
            "include_dashboard": False,
        },
    )
    nodes = [c.add_node(num_cpus=cpus) for cpus in workers]
    c.wait_for_nodes()
    ray.init(address=c.address, namespace="serve", log_to_driver=False)
    try:
        yield c, nodes
    finally:
        from ray import serve

        try:
            serve.shutdown()
        finally:
            ray.shutdown()
            c.shutdown()


def app_config(port: int, image_port: int, tune: Callable[[dict[str, dict]], None]) -> dict:
    """serve_config.yaml on loopback, the proxy on the head only, deployments ``tune``d."""
    config = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    config["proxy_location"] = "HeadOnly"
    config["http_options"] = {"host": "127.0.0.1", "port": port}
    (app,) = config["applications"]
    deployments = {d["name"]: d for d in app["deployments"]}
    deployments["Downloader"]["user_config"]["allowed_networks"] = [f"{IMAGE_HOST}/32"]
    tune(deployments)
    return config


def deploy(config: dict) -> str:
    from ray.serve._private.api import serve_start
    from ray.serve.schema import ServeDeploySchema

    schema = ServeDeploySchema.model_validate(config)
    client = serve_start(
        http_options=schema.http_options.model_dump(), proxy_location=schema.proxy_location
    )
    client.deploy_apps(schema, _blocking=False)
    base_url = f"http://127.0.0.1:{config['http_options']['port']}"
    deadline = time.monotonic() + DEPLOY_TIMEOUT_S
    while time.monotonic() < deadline:
        if fully_running() and _ok(base_url + "/"):
            return base_url
        time.sleep(1)
    raise TimeoutError(f"{APP} not running after {DEPLOY_TIMEOUT_S}s")


def _ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.RequestException:
        return False


def fully_running() -> bool:
    """The app RUNNING, each deployment HEALTHY with only RUNNING replicas."""
    from ray import serve

    status = serve.status().applications.get(APP)
    if status is None or status.status != "RUNNING":
        return False
    return all(
        d.status == "HEALTHY" and set(d.replica_states) == {"RUNNING"}
        for d in status.deployments.values()
    )


def replicas() -> dict[str, list[str]]:
    """Deployment -> the node ids of its live replica actors (from the GCS, no dashboard)."""
    from ray._private import state

    found: dict[str, list[str]] = {}
    for actor in state.actors().values():
        name = actor.get("Name") or ""
        if actor.get("State") == "ALIVE" and name.startswith(f"SERVE_REPLICA::{APP}#"):
            found.setdefault(name.split("#")[1], []).append(actor["Address"]["NodeID"])
    return found


def running_replicas(deployment: str) -> int:
    from ray import serve

    status = serve.status().applications.get(APP)
    if status is None or deployment not in status.deployments:
        return 0
    return status.deployments[deployment].replica_states.get("RUNNING", 0)


# --- load and answers ------------------------------------------------------------------


def classify(response: requests.Response | None) -> str:
    """``ok`` (200 with a cat), ``json:STATUS:Type`` (the contract's error), else ``other:...``."""
    if response is None:
        return "other:connection"
    try:
        body = response.json()
    except ValueError:
        return f"other:{response.status_code}:not-json"
    if response.status_code == 200:
        predictions = body.get("predictions") or [{}]
        return "ok" if predictions[0].get("label") in CATS else "other:200:wrong-answer"
    error = body.get("error") if isinstance(body, dict) else None
    if (
        response.status_code in CONTRACT_STATUSES
        and set(body) == {"error"}
        and isinstance(error, dict)
        and set(error) == {"type", "detail"}
    ):
        return f"json:{response.status_code}:{error['type']}"
    return f"other:{response.status_code}"


@dataclass
class Load:
    """Clients sending request after request until stopped; every answer kept."""

    base_url: str
    image_url: str
    clients: int
    answers: list[tuple[float, float, str]] = field(default_factory=list)  # sent, done, class
    _stop: threading.Event = field(default_factory=threading.Event)
    _pool: ThreadPoolExecutor | None = None

    def _client(self) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            sent = time.monotonic()
            try:
                response = session.get(
                    self.base_url + "/predictions", params={"url": self.image_url}, timeout=75
                )
            except requests.RequestException:
                response = None
                session = requests.Session()
            self.answers.append((sent, time.monotonic(), classify(response)))

    def __enter__(self) -> Load:
        self._pool = ThreadPoolExecutor(self.clients)
        for _ in range(self.clients):
            self._pool.submit(self._client)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._pool is not None
        self._pool.shutdown(wait=True)


def tally(answers: list[tuple[float, float, str]]) -> dict[str, int]:
    return dict(Counter(kind for _, _, kind in answers))


# --- node loss -------------------------------------------------------------------------

RECOVERY_BOUND_S = 120.0
TAIL_S = 5.0


def node_loss() -> dict[str, Any]:
    """Downloader and model spread over the head and a worker; the worker lost under load."""

    def tune(d: dict[str, dict]) -> None:
        # The ingress stays on the head (with the proxy); two fixed replicas of the
        # others, which Serve spreads over the two nodes.
        d["ImageTagger"]["ray_actor_options"]["resources"] = {"head": 0.01}
        for name in ("Downloader", "ModelDeployment"):
            d[name].pop("autoscaling_config", None)
            d[name]["num_replicas"] = 2
            d[name]["ray_actor_options"]["num_cpus"] = 0.5

    report: dict[str, Any] = {}
    routes = {"/chelsea.jpg": servers.respond(CHELSEA.read_bytes(), "image/jpeg")}
    # Head: room for every replica once the worker is gone (2.1 CPUs) and for the tag
    # job beside them (read, decode and one model actor: 3 CPUs), else the job waits.
    with servers.LoopbackServer(IMAGE_HOST, routes) as images, cluster(6, [2]) as (c, nodes):
        import ray

        head_id = ray.get_runtime_context().get_node_id()
        worker_id = nodes[0].node_id
        config = app_config(servers.unused_port("127.0.0.1"), images.port, tune)
        base_url = deploy(config)
        before = replicas()
        report["placement_before"] = {
            name: sorted("worker" if n == worker_id else "head" for n in ids)
            for name, ids in before.items()
        }
        with Load(base_url, images.url("/chelsea.jpg"), clients=4) as load:
            time.sleep(5)
            removed = time.monotonic()
            c.remove_node(nodes[0], allow_graceful=False)
            back = None
            while time.monotonic() - removed < RECOVERY_BOUND_S:
                now = replicas()
                on_head = all(
                    len([n for n in now.get(name, []) if n == head_id]) == 2
                    for name in ("Downloader", "ModelDeployment")
                )
                if on_head and fully_running():
                    back = time.monotonic()
                    break
                time.sleep(0.5)
            time.sleep(TAIL_S)  # load continues on the recovered service
        report["replicas_back_s"] = None if back is None else round(back - removed, 1)
        # Split by when each answer came back, not when it was sent: a request in flight
        # when the node goes may have been on the lost node's replicas, and its 503 is an
        # answer *during* the loss (a clean clone's run once counted two of those
        # "before" it, when they were bucketed by their send time).
        after = [a for a in load.answers if a[1] >= removed]
        failed = [a for a in after if a[2] != "ok"]
        last_failure = max((a[1] for a in failed), default=removed)
        report["recovered_s"] = (
            None if back is None else round(max(back, last_failure) - removed, 1)
        )
        report["answers_before_loss"] = tally([a for a in load.answers if a[1] < removed])
        report["answers_after_loss"] = tally(after)
        report["answers_in_tail"] = tally(
            [a for a in load.answers if back is not None and a[0] >= back]
        )
        report["longest_answer_s"] = round(max(d - s for s, d, _ in load.answers), 1)
        report["placement_after"] = {
            name: sorted("worker" if n == worker_id else "head" for n in ids)
            for name, ids in replicas().items()
        }
        report["tag"] = tag_on_cluster(c.address)
    return report


def tag_on_cluster(address: str) -> dict[str, Any]:
    """``imagetagger tag --address`` on the cluster that lost a node: one row per input."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        inputs = 6
        for index in range(inputs - 1):
            (folder / f"cat-{index}.jpg").write_bytes(CHELSEA.read_bytes())
        (folder / "broken.jpg").write_bytes(b"not an image")  # a row with the API's error
        out = Path(tmp) / "tags.jsonl"
        started = time.monotonic()
        try:
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "imagetagger.cli",
                    "tag",
                    str(folder),
                    "--out",
                    str(out),
                    "--address",
                    address,
                ],
                capture_output=True,
                text=True,
                timeout=180,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            return {"exit": "timeout", "inputs": inputs, "rows": 0, "seconds": exc.timeout}
        rows = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
        return {
            "exit": done.returncode,
            "inputs": inputs,
            "rows": len(rows),
            "errors": sorted(r["error"]["type"] for r in rows if r.get("error")),
            "seconds": round(time.monotonic() - started, 1),
            "stderr_tail": done.stderr[-600:] if done.returncode else "",
        }


# --- the Downloader's autoscaling ------------------------------------------------------

SLOW_ORIGIN_S = 1.5
LOAD_S = 25.0
SCALE_IN_BOUND_S = 60.0


def autoscale() -> dict[str, Any]:
    """A slow origin: downloads are the bottleneck, so the Downloader scales, the model not.

    The shipped targets (64 ongoing per Downloader) need more clients than a 2-core
    test machine should run; the same policy with smaller numbers shows the behaviour.
    """

    def tune(d: dict[str, dict]) -> None:
        d["Downloader"]["autoscaling_config"] = {
            "min_replicas": 1,
            "max_replicas": 3,
            "target_ongoing_requests": 2,
            "upscale_delay_s": 1,
            "downscale_delay_s": 4,
            "metrics_interval_s": 0.5,
            "look_back_period_s": 2,
        }
        d["Downloader"]["user_config"]["max_connections_per_host"] = 4

    report: dict[str, Any] = {}
    slow = servers.delayed(servers.respond(CHELSEA.read_bytes(), "image/jpeg"), SLOW_ORIGIN_S)
    with servers.LoopbackServer(IMAGE_HOST, {"/slow.jpg": slow}) as images, cluster(4, []):
        base_url = deploy(app_config(servers.unused_port("127.0.0.1"), images.port, tune))
        timeline: list[tuple[float, int, int]] = []

        def sample(since: float) -> None:
            timeline.append(
                (
                    round(time.monotonic() - since, 1),
                    running_replicas("Downloader"),
                    running_replicas("ModelDeployment"),
                )
            )

        started = time.monotonic()
        with Load(base_url, images.url("/slow.jpg"), clients=12) as load:
            while time.monotonic() - started < LOAD_S:
                sample(started)
                time.sleep(1)
        load_end = time.monotonic()
        scaled_in = None
        while time.monotonic() - load_end < SCALE_IN_BOUND_S:
            sample(started)
            if running_replicas("Downloader") == 1 and fully_running():
                scaled_in = round(time.monotonic() - load_end, 1)
                break
            time.sleep(1)
        ups = [t for t, downloaders, _ in timeline if downloaders > 1]
        report["downloader_max"] = max(downloaders for _, downloaders, _ in timeline)
        report["model_max"] = max(models for _, _, models in timeline)
        report["first_scale_out_s"] = ups[0] if ups else None
        report["scaled_in_after_load_s"] = scaled_in
        report["answers"] = tally(load.answers)
        report["timeline"] = timeline
    return report


SCENARIOS = {"node-loss": node_loss, "autoscale": autoscale}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    args = parser.parse_args(argv)
    report = SCENARIOS[args.scenario]()
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
