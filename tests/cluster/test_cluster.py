"""Several Ray nodes on this machine: a node lost under load, and the Downloader's own scaling.

Each scenario runs in a child process (``tests/cluster/scenarios.py``): it needs a
multi-node ``ray.cluster_utils.Cluster``, which cannot share a process with the
session's ``ray.init`` cluster. The child prints its measurements as JSON; the
assertions are here. Traffic stays on loopback.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from typing import Any

import pytest

from tests.paths import REPO_ROOT

ROOT = REPO_ROOT
SCENARIO_TIMEOUT_S = 420


def run_scenario(name: str) -> dict[str, Any]:
    # A private TMPDIR: the child's Ray session files (and Ray's "latest cluster"
    # lookup) stay apart from any other Ray instance on this machine.
    tmp = tempfile.mkdtemp(prefix="itc-", dir="/tmp")  # short: Ray's socket paths
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["TMPDIR"] = tmp
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.cluster.scenarios", name],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its Ray processes too: one group to stop on a timeout
    )
    try:
        stdout, stderr = child.communicate(timeout=SCENARIO_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGINT)  # the scenario's finally shuts its cluster down
        try:
            stdout, stderr = child.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            stdout, stderr = child.communicate()
        pytest.fail(f"{name} ran past {SCENARIO_TIMEOUT_S}s\n{stderr[-3000:]}")
    shutil.rmtree(tmp, ignore_errors=True)
    lines = stdout.strip().splitlines()
    assert child.returncode == 0 and lines, f"exit {child.returncode}\n{stderr[-3000:]}"
    report = json.loads(lines[-1])
    print(name, json.dumps(report, indent=1))  # the measured figures, with pytest -s
    return report


def _only_ok_or_contract_errors(answers: dict[str, int]) -> None:
    others = {
        kind: n for kind, n in answers.items() if not (kind == "ok" or kind.startswith("json:"))
    }
    assert others == {}, answers


@pytest.fixture(scope="module")
def node_loss() -> dict[str, Any]:
    return run_scenario("node-loss")


def test_replicas_were_spread_over_both_nodes(node_loss: dict[str, Any]) -> None:
    placement = node_loss["placement_before"]
    assert placement["ImageTagger"] == ["head"]
    for name in ("Downloader", "ModelDeployment"):
        assert placement[name] == ["head", "worker"], placement


def test_every_answer_during_node_loss_is_a_200_or_a_contract_error(
    node_loss: dict[str, Any],
) -> None:
    before, after = node_loss["answers_before_loss"], node_loss["answers_after_loss"]
    assert set(before) == {"ok"}, before
    _only_ok_or_contract_errors(after)
    assert after.get("ok", 0) > 0
    assert node_loss["longest_answer_s"] < 60  # answers, never a hang


def test_replicas_come_back_on_the_remaining_node_in_bounded_time(
    node_loss: dict[str, Any],
) -> None:
    assert node_loss["placement_after"] == {
        "ImageTagger": ["head"],
        "Downloader": ["head", "head"],
        "ModelDeployment": ["head", "head"],
    }
    assert node_loss["replicas_back_s"] is not None
    assert node_loss["recovered_s"] is not None and node_loss["recovered_s"] < 90
    assert set(node_loss["answers_in_tail"]) == {"ok"}  # all 200 once recovered


def test_tag_on_the_cluster_that_lost_a_node_writes_one_row_per_input(
    node_loss: dict[str, Any],
) -> None:
    tag = node_loss["tag"]
    assert tag["exit"] == 0, tag
    assert tag["rows"] == tag["inputs"], tag
    assert tag["errors"] == ["InvalidImage"], tag  # the one broken file, as the API says it


@pytest.fixture(scope="module")
def autoscale() -> dict[str, Any]:
    return run_scenario("autoscale")


def test_downloader_scales_out_under_a_slow_origin_while_the_model_stays(
    autoscale: dict[str, Any],
) -> None:
    assert autoscale["downloader_max"] >= 2, autoscale["timeline"]
    assert autoscale["model_max"] == 1, autoscale["timeline"]
    assert autoscale["first_scale_out_s"] is not None and autoscale["first_scale_out_s"] < 20
    _only_ok_or_contract_errors(autoscale["answers"])
    assert autoscale["answers"].get("ok", 0) > 0


def test_downloader_scales_back_in_after_the_load(autoscale: dict[str, Any]) -> None:
    assert autoscale["scaled_in_after_load_s"] is not None, autoscale["timeline"]
