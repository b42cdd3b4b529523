"""``imagetagger serve`` for real (what ``make run`` runs), stopped as a terminal's Ctrl-C does.

A private Ray instance of its own (its own RAY_TMPDIR; HAProxy files and ports as
`imagetagger serve` picks them, nothing of the session's passed on) beside the
session's cluster: it starts, tags a photo, its Ray dashboard shows the application
and its three deployments (the dashboard's own Serve API, which its Serve page reads,
with the slowed idle loops of issue 34), and Ctrl-C (SIGINT to its process group)
stops it (make bench times it) with exit status 0, no shutdown warning, and nothing of
it left running.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
import yaml

from imagetagger.serving.host_resources import auth_token
from tests import servers
from tests.service.helpers import IMAGE_HOST, ROOT, Service

START_TIMEOUT_S = 600
INSTANCE_ENV_PREFIXES = ("RAY_SERVE_HAPROXY_", "RAY_SERVE_FALLBACK_PROXY_", "RAY_SERVE_DIRECT_")
# A bound that catches a hang (Serve's shutdown has 20 s, then the daemons 5 s), not the
# speed target: `make bench` measures the stop time beside the peers (<= 10 s; 8.8-9.0 s
# on 2026-12-02), where a noisy CI machine cannot fail it.
STOP_LIMIT_S = 30.0
DEPLOYMENTS = {"ImageTagger", "Downloader", "ModelDeployment"}


def _dashboard_applications(log: str, env: dict[str, str]) -> dict:
    """What the Ray dashboard's Serve page is built from: its /api/serve/applications/."""
    match = re.search(r"Ray started \(dashboard (http://127\.0\.0\.1:\d+)", log)
    assert match is not None, log[-3000:]
    headers = {"Authorization": f"Bearer {auth_token(env)}"}  # the cluster's token
    answer = requests.get(f"{match.group(1)}/api/serve/applications/", headers=headers, timeout=30)
    assert answer.status_code == 200, answer.text[:500]
    return answer.json()["applications"]


def _ours(marker: str) -> list[int]:
    """Processes that carry ``marker`` in their environment (the whole Ray tree)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if marker.encode() in (entry / "environ").read_bytes():
                    state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                    if state != "Z":
                        found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_ctrl_c_stops_make_run_within_10_s_without_warnings(service: Service) -> None:
    port = servers.unused_port("127.0.0.1")
    ray_tmp = tempfile.mkdtemp(prefix="itc-", dir="/tmp")  # short: Ray's socket paths
    config = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    config["http_options"]["host"] = "127.0.0.1"
    config_path = Path(ray_tmp) / "serve_config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    marker = f"IMAGETAGGER_STOP_TEST={os.getpid()}-{time.monotonic_ns()}"
    # As a user's shell has it: none of the session's instance settings (its HAProxy
    # files and ports); `imagetagger serve` picks its own.
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(INSTANCE_ENV_PREFIXES)},
        "RAY_TMPDIR": ray_tmp,
        marker.split("=")[0]: marker.split("=")[1],
    }
    env.pop("RAY_ADDRESS", None)
    log_path = Path(ray_tmp) / "serve.log"
    command = [str(Path(sys.executable).with_name("imagetagger")), "serve"]
    command += ["--config", str(config_path), "--port", str(port)]
    command += ["--allow-network", f"{IMAGE_HOST}/32"]
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert process.poll() is None, log_path.read_text()[-3000:]
            try:
                if requests.get(base_url + "/", timeout=5).status_code == 200:
                    break
            # Serve's fallback proxy holds a request until the replica is ready (seen
            # for 4.8-11 s under load): not an answer yet, ask again.
            except (requests.ConnectionError, requests.Timeout):
                pass
            assert time.monotonic() < deadline, "not serving in time"
            time.sleep(1)
        url = service.image_url("chelsea.jpg")
        answer = requests.get(base_url + "/predictions", params={"url": url}, timeout=60)
        assert answer.status_code == 200
        assert answer.json()["predictions"][0]["label"] in {"tabby", "tiger_cat", "Egyptian_cat"}
        application = _dashboard_applications(log_path.read_text(), env)["imagetagger"]
        assert application["status"] == "RUNNING"
        assert set(application["deployments"]) == DEPLOYMENTS
        assert {d["status"] for d in application["deployments"].values()} == {"HEALTHY"}

        stopped_at = time.monotonic()
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        status = process.wait(timeout=60)
        took = time.monotonic() - stopped_at
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        for pid in _ours(marker):
            os.kill(pid, signal.SIGKILL)
    output = log_path.read_text()
    assert status == 0, output[-3000:]
    assert took <= STOP_LIMIT_S, f"stopped in {took:.1f} s"
    assert "failed to shut down" not in output
    assert "killing what did not stop" not in output
    time.sleep(1)
    assert _ours(marker) == []
    subprocess.run(["rm", "-rf", ray_tmp], check=False)
