"""The ``imagetagger`` command: argument checks, config overrides, signals, local predictions.

``serve`` is exercised for real as a subprocess, but with stand-ins for Ray's tools
(``ray start``, ``serve run --non-blocking``, the Serve drivers), so no Ray cluster
starts: they record their arguments and the config they were given, and ``ray start``
leaves fake daemons behind for ``serve`` to adopt and stop, as the real one does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skimage.data
import yaml
from PIL import Image

from imagetagger import cli
from imagetagger.cli import serve
from imagetagger.labels import LABELS
from imagetagger.serving import host_resources, serve_config
from imagetagger.serving.ports import PRIVATE_PORTS
from imagetagger.serving.serving_env import LOCAL_SERVING_ENV, SERVING_ENV
from tests.paths import REPO_ROOT

ROOT = REPO_ROOT
CAT_LABELS = {"tabby", "tiger_cat", "Egyptian_cat", "Persian_cat", "Siamese_cat", "lynx"}

BASE_CONFIG: dict[str, Any] = {
    "proxy_location": "EveryNode",
    "http_options": {"host": "0.0.0.0", "port": 8000},
    "applications": [
        {
            "name": "imagetagger",
            "route_prefix": "/",
            "import_path": "deployments.app:build_app",
            "args": {"model": "efficientnet_lite2", "intra_op_threads": 2},
        },
        {"name": "other", "route_prefix": "/other", "import_path": "other.app:app"},
    ],
}


# --- config overrides (pure functions) ------------------------------------------------


def test_apply_http_port_sets_port_and_keeps_host_and_input() -> None:
    original = json.loads(json.dumps(BASE_CONFIG))
    result = serve_config.apply_http(BASE_CONFIG, port=9123)
    assert result["http_options"] == {"host": "0.0.0.0", "port": 9123}
    assert result["applications"] == BASE_CONFIG["applications"]
    assert original == BASE_CONFIG  # the input is not modified


def test_apply_http_port_none_keeps_the_file_port() -> None:
    result = serve_config.apply_http(BASE_CONFIG, port=None)
    assert result == BASE_CONFIG
    assert result is not BASE_CONFIG


def test_apply_http_creates_http_options_when_missing() -> None:
    assert serve_config.apply_http({"applications": []}, port=8080) == {
        "applications": [],
        "http_options": {"port": 8080},
    }


def test_apply_http_sets_host_and_port_and_keeps_the_rest() -> None:
    result = serve_config.apply_http(BASE_CONFIG, host="127.0.0.1", port=9124)
    assert result["http_options"] == {"host": "127.0.0.1", "port": 9124}
    assert serve_config.apply_http(BASE_CONFIG) == BASE_CONFIG
    assert BASE_CONFIG["http_options"] == {"host": "0.0.0.0", "port": 8000}


def test_load_serve_config_reads_a_mapping_only(tmp_path: Path) -> None:
    assert serve_config.load_serve_config(ROOT / "serve_config.yaml")["applications"]
    (tmp_path / "list.yaml").write_text("- not\n- a config\n")
    with pytest.raises(ValueError, match="not a Serve config"):
        serve_config.load_serve_config(tmp_path / "list.yaml")


@pytest.mark.parametrize(
    ("cli_port", "environ", "expected"),
    [
        (9000, {"PORT": "7000"}, 9000),  # --port wins
        (None, {"PORT": "7000"}, 7000),  # then $PORT
        (None, {"PORT": " 7001 "}, 7001),
        (None, {"PORT": ""}, None),  # empty means unset: keep the file's port
        (None, {}, None),
    ],
)
def test_resolve_port_precedence(
    cli_port: int | None, environ: dict[str, str], expected: int | None
) -> None:
    assert cli.resolve_port(cli_port, environ) == expected


@pytest.mark.parametrize("value", ["http", "0", "65536", "-1", "80.5"])
def test_resolve_port_rejects_a_bad_env_value(value: str) -> None:
    with pytest.raises(ValueError, match=r"\$PORT"):
        cli.resolve_port(None, {"PORT": value})


def test_apply_model_patches_only_imagetagger_apps() -> None:
    result = serve_config.apply_model(BASE_CONFIG, "efficientnet_b3")
    apps = result["applications"]
    assert apps[0]["args"] == {"model": "efficientnet_b3", "intra_op_threads": 2}
    assert "args" not in apps[1]
    assert BASE_CONFIG["applications"][0]["args"]["model"] == "efficientnet_lite2"


def test_apply_model_adds_args_when_missing() -> None:
    config = {"applications": [{"name": "a", "import_path": "deployments.app:build_app"}]}
    result = serve_config.apply_model(config, "efficientnet_lite0")
    assert result["applications"][0]["args"] == {"model": "efficientnet_lite0"}


def test_apply_model_none_is_a_copy() -> None:
    result = serve_config.apply_model(BASE_CONFIG, None)
    assert result == BASE_CONFIG
    assert result is not BASE_CONFIG


def test_apply_model_rejects_unknown_model_and_missing_app() -> None:
    with pytest.raises(ValueError, match="unknown model 'resnet50'"):
        serve_config.apply_model(BASE_CONFIG, "resnet50")
    with pytest.raises(ValueError, match="no application with import_path"):
        serve_config.apply_model(
            {"applications": [BASE_CONFIG["applications"][1]]}, "efficientnet_b3"
        )


# --- argument validation --------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["predict", "x.jpg", "--top", "0"], "greater than or equal to 1"),
        (["predict", "x.jpg", "--top", "1001"], "less than or equal to 1000"),
        (["predict", "x.jpg", "--top", "2.5"], "valid integer"),
        (["predict", "x.jpg", "--minconf", "-0.1"], "greater than or equal to 0"),
        (["predict", "x.jpg", "--minconf", "1.5"], "less than or equal to 1"),
        (["predict", "x.jpg", "--minconf", "nan"], "less than or equal to 1"),
        (["predict", "x.jpg", "--model", "resnet50"], "unknown model 'resnet50'"),
        (["predict"], "the following arguments are required: PATH"),
        (["serve"], "the following arguments are required: --config"),
        (["serve", "--config", "c.yaml", "--port", "0"], "between 1 and 65535"),
        (["serve", "--config", "c.yaml", "--port", "http"], "invalid port 'http'"),
        ([], "the following arguments are required: command"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_good_arguments_parse_to_the_api_types() -> None:
    args = cli.build_parser().parse_args(
        [
            "predict",
            "a.jpg",
            "b.png",
            "--top",
            "1000",
            "--minconf",
            "0",
            "--model",
            "efficientnet_b3",
        ]
    )
    assert (args.paths, args.top, args.minconf, args.model) == (
        ["a.jpg", "b.png"],
        1000,
        0.0,
        "efficientnet_b3",
    )
    defaults = cli.build_parser().parse_args(["predict", "a.jpg"])
    assert (defaults.top, defaults.minconf) == (None, None)


def test_predict_model_default_follows_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMAGETAGGER_MODEL", raising=False)
    assert cli.build_parser().parse_args(["predict", "a"]).model == "efficientnet_lite2"
    monkeypatch.setenv("IMAGETAGGER_MODEL", "efficientnet_lite0")
    assert cli.build_parser().parse_args(["predict", "a"]).model == "efficientnet_lite0"


def test_console_script_points_at_main() -> None:
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["imagetagger"] == "imagetagger.cli:main"


def test_cli_module_imports_no_ray_tensorflow_or_numpy() -> None:
    code = (
        "import sys, imagetagger.cli; "
        "print(sorted(m for m in ('ray', 'tensorflow', 'keras', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "[]"


# --- serve: a real subprocess with a fake `serve` -------------------------------------

# Stand-ins for Ray's CLIs and our Serve drivers: they record what they were asked to do
# in RECORD (one JSON line each) and `ray start` leaves two orphaned "daemons" named
# gcs_server and raylet, as the real one does, for `imagetagger serve` to adopt.
FAKE_TOOL = """\
#!{python}
import json, os, signal, subprocess, sys, time

record = os.environ["FAKE_RECORD"]
mode = os.environ.get("FAKE_MODE", "")
tool = os.path.basename(sys.argv[0])
recorded = ("RAY_", "MALLOC_", "IMAGETAGGER_HAPROXY_", "REPORTER_", "METRICS_RECORD_")
entry = {{"tool": tool, "argv": sys.argv[1:],
          "env": {{k: v for k, v in os.environ.items() if k.startswith(recorded)}}}}
if tool == "serve" and sys.argv[1] == "run":
    entry["config"] = open(sys.argv[-1]).read()
with open(record, "a") as f:
    f.write(json.dumps(entry) + "\\n")
if tool == "ray" and sys.argv[1] == "start":
    here = os.path.dirname(sys.argv[0])
    for daemon in ("gcs_server", "raylet"):
        if os.fork() == 0:  # orphaned at once: ray start exits before its daemons
            os.setsid()
            subprocess.Popen(
                [os.path.join(here, daemon), "--log_dir=" + here + "/logs"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            os._exit(0)
    time.sleep(0.2)
if tool == "control" and sys.argv[1] == "wait" and mode == "deploy-fails":
    print("application 'imagetagger' failed to deploy: ImportError: boom", file=sys.stderr)
    sys.exit(1)
if tool == "control" and sys.argv[1] == "shutdown" and mode == "slow-shutdown":
    time.sleep(60)
"""

FAKE_DAEMON = """\
#!{python}
import os, signal, sys, time
if os.environ.get("FAKE_MODE") == "stubborn" and os.path.basename(sys.argv[0]) == "raylet":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
while True:
    time.sleep(0.05)
"""

# `imagetagger serve` with the stand-ins in place of Ray's tools.
SERVE_WITH_FAKES = """\
import sys
from imagetagger.cli import main
from imagetagger.serving import local_ray
bin_dir = sys.argv[1]
local_ray.default_tools = lambda: local_ray.Tools(
    ray=[bin_dir + "/ray"], serve=[bin_dir + "/serve"], control=[bin_dir + "/control"]
)
sys.exit(main(sys.argv[2:]))
"""


def _wait_for(condition: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# What a Serve instance is isolated by; another instance's (the test session's) values
# must not reach the `imagetagger serve` under test, which picks its own.
INSTANCE_ENV_PREFIXES = ("RAY_SERVE_HAPROXY_", "RAY_SERVE_FALLBACK_PROXY_", "RAY_SERVE_DIRECT_")


class ServeRun:
    """``imagetagger serve`` in a subprocess, with stand-ins for Ray's tools."""

    def __init__(self, tmp_path: Path, mode: str, env: dict[str, str], extra: list[str]):
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        for name, text in (
            ("ray", FAKE_TOOL),
            ("serve", FAKE_TOOL),
            ("control", FAKE_TOOL),
            ("gcs_server", FAKE_DAEMON),
            ("raylet", FAKE_DAEMON),
        ):
            (bin_dir / name).write_text(text.format(python=sys.executable))
            (bin_dir / name).chmod(0o755)
        config = tmp_path / "serve_config.yaml"
        config.write_text(yaml.safe_dump(BASE_CONFIG, sort_keys=False))
        self.record = tmp_path / "record.jsonl"
        self.port_file = tmp_path / "port"
        dropped = {"PORT", "IMAGETAGGER_MODEL", *SERVING_ENV, *LOCAL_SERVING_ENV}
        environ = {
            k: v
            for k, v in os.environ.items()
            if k not in dropped and not k.startswith(INSTANCE_ENV_PREFIXES)
        }
        environ.update(
            FAKE_RECORD=str(self.record),
            FAKE_MODE=mode,
            RAY_AUTH_TOKEN="test-token",  # no token to make
            IMAGETAGGER_PORT_FILE=str(self.port_file),
            **env,
        )
        command = ["serve", "--config", str(config), *extra]
        self.process = subprocess.Popen(
            [sys.executable, "-c", SERVE_WITH_FAKES, str(bin_dir), *command],
            env=environ,
            cwd=tmp_path,
            stderr=subprocess.PIPE,
            text=True,
        )

    def calls(self) -> list[dict[str, Any]]:
        try:
            lines = self.record.read_text().splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in lines]

    def call(self, tool: str, command: str) -> dict[str, Any] | None:
        found = [c for c in self.calls() if c["tool"] == tool and c["argv"][0] == command]
        return found[0] if found else None

    def wait_call(self, tool: str, command: str) -> dict[str, Any]:
        return _wait_for(lambda: self.call(tool, command))

    def daemons(self) -> list[int]:
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    cmdline = (entry / "cmdline").read_bytes()
                except OSError:
                    continue
                if str(self.record.parent / "bin").encode() in cmdline and b"--log_dir" in cmdline:
                    pids.append(int(entry.name))
        return [pid for pid in pids if _alive(pid)]

    def finish(self, timeout: float = 30) -> int:
        try:
            return self.process.wait(timeout=timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()


@pytest.fixture
def serve_run(tmp_path: Path):
    runs: list[ServeRun] = []

    def start(mode: str = "", env: dict[str, str] | None = None, extra=()) -> ServeRun:
        run = ServeRun(tmp_path, mode, env or {}, list(extra))
        runs.append(run)
        return run

    yield start
    for run in runs:
        if run.process.poll() is None:
            run.process.kill()
            run.process.wait()
        for pid in run.daemons():
            os.kill(pid, signal.SIGKILL)


def test_serve_starts_ray_and_deploys_the_effective_config(serve_run) -> None:
    run = serve_run(env={"PORT": "7000", "IMAGETAGGER_MODEL": "efficientnet_lite0"})
    deploy = run.wait_call("serve", "run")
    assert deploy["argv"][1] == "--non-blocking"
    config = yaml.safe_load(deploy["config"])
    # The file's 0.0.0.0 is HAProxy's to open; Serve (and so every replica's own HTTP
    # server and the fallback proxy) stays on loopback.
    assert config["http_options"] == {"host": "127.0.0.1", "port": 7000}
    assert config["applications"][0]["args"] == {
        "model": "efficientnet_lite0",
        "intra_op_threads": 2,
    }
    assert config["applications"][1] == BASE_CONFIG["applications"][1]
    start = run.call("ray", "start")
    assert start is not None
    assert {"--head", "--node-ip-address=127.0.0.1", "--no-monitor"} <= set(start["argv"])
    assert start["env"]["IMAGETAGGER_HAPROXY_BIND"] == "0.0.0.0"
    wrapper = Path(start["env"]["RAY_SERVE_HAPROXY_BINARY_PATH"])
    assert wrapper.parent == socket_path_of(start).parent and os.access(wrapper, os.X_OK)
    assert Path(start["env"]["IMAGETAGGER_HAPROXY_BINARY"]).name == "haproxy"
    assert "--include-log-monitor=false" in start["argv"]
    # Ports of this instance alone: another Serve instance never answers its requests.
    for key in ("RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT", "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT"):
        assert int(start["env"][key]) in PRIVATE_PORTS
    socket_path = Path(start["env"]["RAY_SERVE_HAPROXY_SOCKET_PATH"])
    assert socket_path != Path("/tmp/haproxy-serve/admin.sock")
    # Ray puts the socket under a folder named by the node's 56-character id.
    beside_node_id = socket_path.parent / ("n" * 56) / socket_path.name
    assert len(str(beside_node_id)) <= serve.HAPROXY_SOCKET_MAX
    wait = run.wait_call("control", "wait")
    assert wait["argv"][2:4] == ["imagetagger", "other"]  # both applications
    assert run.port_file.read_text() == "7000\n"
    assert len(_wait_for(run.daemons)) == 2

    run.process.send_signal(signal.SIGTERM)
    assert run.finish() == 0
    assert run.call("control", "shutdown") is not None  # Serve's graceful shutdown first
    assert run.daemons() == []  # then the adopted daemons
    assert not Path(deploy["argv"][-1]).exists()  # the temporary config is removed


def test_serve_runs_ray_in_the_serving_mode(serve_run) -> None:
    run = serve_run(env={"RAY_SERVE_HAPROXY_NBTHREAD": "3"})  # exported values win
    env = run.wait_call("ray", "start")["env"]
    expected = {**SERVING_ENV, **LOCAL_SERVING_ENV, "RAY_SERVE_HAPROXY_NBTHREAD": "3"}
    assert {key: env.get(key) for key in expected} == expected
    run.process.send_signal(signal.SIGINT)
    assert run.finish() == 0


def test_serve_cli_options_override_env(serve_run) -> None:
    run = serve_run(
        env={"PORT": "7000", "IMAGETAGGER_MODEL": "efficientnet_lite0"},
        extra=["--port", "9001", "--model", "efficientnet_b3"],
    )
    config = yaml.safe_load(run.wait_call("serve", "run")["config"])
    assert config["http_options"]["port"] == 9001
    assert config["applications"][0]["args"]["model"] == "efficientnet_b3"
    run.wait_call("control", "wait")
    run.process.send_signal(signal.SIGINT)
    assert run.finish() == 0


def socket_path_of(call: dict[str, Any]) -> Path:
    return Path(call["env"]["RAY_SERVE_HAPROXY_SOCKET_PATH"])


def test_serve_keeps_the_file_config_without_overrides(serve_run) -> None:
    run = serve_run()
    expected = serve_config.apply_http(BASE_CONFIG, host="127.0.0.1")  # Serve on loopback
    assert yaml.safe_load(run.wait_call("serve", "run")["config"]) == expected
    assert run.port_file.read_text() == "8000\n"
    run.process.send_signal(signal.SIGTERM)
    assert run.finish() == 0


@pytest.mark.parametrize(
    ("extra", "env", "bind"),
    [
        (["--host", "192.0.2.7"], {"IMAGETAGGER_HOST": "0.0.0.0"}, "192.0.2.7"),  # --host wins
        ([], {"IMAGETAGGER_HOST": "::"}, "::"),  # then $IMAGETAGGER_HOST, then the file's
    ],
)
def test_serve_host_opens_only_haproxy(
    serve_run, extra: list[str], env: dict[str, str], bind: str
) -> None:
    run = serve_run(env=env, extra=extra)
    config = yaml.safe_load(run.wait_call("serve", "run")["config"])
    assert config["http_options"]["host"] == "127.0.0.1"
    assert run.call("ray", "start")["env"]["IMAGETAGGER_HAPROXY_BIND"] == bind
    run.process.send_signal(signal.SIGTERM)
    assert run.finish() == 0


def test_serve_without_haproxy_gives_serve_the_host(serve_run) -> None:
    """Serve's Python proxy listens on http_options.host itself: no HAProxy to open it."""
    run = serve_run(env={"RAY_SERVE_ENABLE_HA_PROXY": "0"}, extra=["--host", "0.0.0.0"])
    config = yaml.safe_load(run.wait_call("serve", "run")["config"])
    assert config["http_options"]["host"] == "0.0.0.0"
    assert "RAY_SERVE_HAPROXY_BINARY_PATH" not in run.call("ray", "start")["env"]
    run.process.send_signal(signal.SIGTERM)
    assert run.finish() == 0


@pytest.mark.parametrize(
    ("cli_host", "environ", "config", "expected"),
    [
        ("10.0.0.1", {"IMAGETAGGER_HOST": "0.0.0.0"}, {"http_options": {"host": "::"}}, "10.0.0.1"),
        (None, {"IMAGETAGGER_HOST": " 0.0.0.0 "}, {"http_options": {"host": "::"}}, "0.0.0.0"),
        (None, {"IMAGETAGGER_HOST": ""}, {"http_options": {"host": "::"}}, "::"),
        (None, {}, {"http_options": {"port": 1}}, "127.0.0.1"),  # loopback by default
        (None, {}, {}, "127.0.0.1"),
    ],
)
def test_resolve_host_precedence(
    cli_host: str | None, environ: dict[str, str], config: dict[str, Any], expected: str
) -> None:
    assert serve.resolve_host(cli_host, environ, config) == expected


def test_the_local_default_serves_on_loopback() -> None:
    config = serve_config.load_serve_config(ROOT / "serve_config.yaml")
    assert serve.resolve_host(None, {}, config) == "127.0.0.1"


def test_a_failed_deploy_is_exit_1_with_the_reason_and_no_daemons_left(serve_run) -> None:
    run = serve_run(mode="deploy-fails")
    assert run.finish() == 1
    assert "ImportError: boom" in run.process.stderr.read()
    assert run.daemons() == []


def test_ray_dying_ends_serve_with_exit_1(serve_run) -> None:
    run = serve_run()
    run.wait_call("control", "wait")
    daemons = _wait_for(run.daemons)
    os.kill(daemons[0], signal.SIGKILL)
    assert run.finish() == 1
    assert "Ray's daemons exited" in run.process.stderr.read()
    assert run.daemons() == []


def test_second_signal_skips_the_graceful_shutdown(serve_run) -> None:
    run = serve_run(mode="slow-shutdown")
    run.wait_call("control", "wait")
    run.process.send_signal(signal.SIGTERM)
    run.wait_call("control", "shutdown")
    started = time.monotonic()
    run.process.send_signal(signal.SIGTERM)
    assert run.finish() == 0
    assert time.monotonic() - started < 15  # not the 60 s the shutdown would take
    assert run.daemons() == []


def test_daemons_that_ignore_sigterm_are_killed(serve_run) -> None:
    run = serve_run(mode="stubborn")
    run.wait_call("control", "wait")
    run.process.send_signal(signal.SIGTERM)
    assert run.finish() == 0
    assert "killing what did not stop in time: raylet" in run.process.stderr.read()
    assert run.daemons() == []


def test_serve_bad_env_port_is_an_error(serve_run) -> None:
    run = serve_run(env={"PORT": "eighty"})
    assert run.finish() == 1
    assert "$PORT: invalid port 'eighty'" in run.process.stderr.read()
    assert run.calls() == []  # Ray never started


@pytest.mark.parametrize(
    ("memory", "shm", "expected"),
    [
        (8 * 2**30, 16 * 2**30, int(8 * 2**30 * 0.3)),  # a laptop: 30% of memory
        (8 * 2**30, 2**30, int(2**30 * 0.9)),  # docker --shm-size=1g: fits /dev/shm
        (8 * 2**30, 64 * 2**20, None),  # Docker's 64 MiB default: Ray's own fallback
        (2 * 2**30, None, int(2 * 2**30 * 0.3)),  # no /dev/shm
    ],
)
def test_object_store_fits_memory_and_shm(memory: int, shm: int | None, expected) -> None:
    assert host_resources.object_store_bytes(memory, shm) == expected


# --- `serve run` in the foreground (where there is no subreaper: not Linux) -----------

FAKE_SERVE = """\
#!{python}
import signal, sys, time
mode = sys.argv[1]
seen = []
def on_signal(signum, frame):
    seen.append(signal.Signals(signum).name)
    print(" ".join(seen), flush=True)
    if mode == "graceful" or signum == signal.SIGTERM:
        sys.exit(0)
signal.signal(signal.SIGINT, on_signal)
signal.signal(signal.SIGTERM, on_signal)
print("started", flush=True)
if mode == "exit3":
    sys.exit(3)
if mode == "selfkill":
    import os
    os.kill(os.getpid(), signal.SIGKILL)
while True:
    time.sleep(0.05)
"""

RUN_FOREGROUND = """\
import sys
from imagetagger.cli.serve import run_foreground
sys.exit(run_foreground([sys.executable, sys.argv[1], sys.argv[2]]))
"""


def _foreground(tmp_path: Path, mode: str) -> subprocess.Popen[str]:
    fake = tmp_path / "fake_serve.py"
    fake.write_text(FAKE_SERVE.format(python=sys.executable))
    process = subprocess.Popen(
        [sys.executable, "-c", RUN_FOREGROUND, str(fake), mode],
        stdout=subprocess.PIPE,
        text=True,
    )
    if mode in ("graceful", "stubborn"):
        assert process.stdout.readline().strip() == "started"
    return process


def test_foreground_first_signal_is_sigint_the_second_sigterm(tmp_path: Path) -> None:
    process = _foreground(tmp_path, "stubborn")
    process.send_signal(signal.SIGTERM)
    assert process.stdout.readline().strip() == "SIGINT"
    assert process.poll() is None  # still shutting down gracefully
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    assert process.stdout.read().strip() == "SIGINT SIGTERM"


def test_foreground_exit_status_is_passed_on(tmp_path: Path) -> None:
    assert _foreground(tmp_path, "exit3").wait(timeout=30) == 3
    assert _foreground(tmp_path, "selfkill").wait(timeout=30) == 128 + signal.SIGKILL


# --- predict: the real model, in this process ----------------------------------------


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    Image.fromarray(skimage.data.chelsea()).save(folder / "cat.jpg", quality=92)
    Image.fromarray(skimage.data.coffee()).save(folder / "coffee.png")
    (folder / "notes.txt").write_bytes(b"this is not an image\n")
    (folder / "subdir").mkdir()
    return folder


def _lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


@pytest.mark.models
def test_predict_prints_one_json_line_per_file_in_order(
    image_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = [
        str(image_dir / "cat.jpg"),
        str(image_dir / "missing.jpg"),
        str(image_dir / "notes.txt"),
        str(image_dir / "subdir"),
        str(image_dir / "coffee.png"),
    ]
    status = cli.main(["predict", *paths, "--model", "efficientnet_lite0", "--top", "3"])
    lines = _lines(capsys.readouterr().out)
    assert status == 1
    assert [line["filename"] for line in lines] == paths

    cat, missing, notes, subdir, coffee = lines
    assert set(cat) == {"filename", "predictions"}
    assert len(cat["predictions"]) == 3
    assert cat["predictions"][0]["label"] in CAT_LABELS
    confidences = [p["confidence"] for p in cat["predictions"]]
    assert confidences == sorted(confidences, reverse=True)
    assert all(0.0 <= c <= 1.0 for c in confidences)
    assert coffee["predictions"][0]["label"] in {"espresso", "cup", "coffee_mug"}

    assert missing == {
        "filename": paths[1],
        "error": {"type": "FileNotFound", "detail": "No such file or directory"},
    }
    assert notes == {
        "filename": paths[2],
        "error": {"type": "InvalidImage", "detail": "Url is not pointing to a valid image format."},
    }
    assert subdir["error"]["type"] == "UnreadableFile"


class _RecordingClassifier:
    """Wraps the real classifier and records the batch sizes it is given."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.spec = inner.spec
        self.batches: list[int] = []

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        self.batches.append(batch.shape[0])
        return self.inner.predict_proba(batch)


@pytest.fixture(scope="module")
def lite0() -> Any:
    from imagetagger.models.tensorflow_runtime import load_tensorflow_classifier

    return load_tensorflow_classifier("efficientnet_lite0")


@pytest.mark.models
def test_predict_files_batches_and_filters(image_dir: Path, lite0: Any, tmp_path: Path) -> None:
    import io

    paths = [str(image_dir / "cat.jpg")] * (cli.PREDICT_BATCH_SIZE + 2)
    paths.insert(3, str(tmp_path / "gone.jpg"))
    classifier = _RecordingClassifier(lite0)
    out = io.StringIO()
    failures = cli.predict_files(classifier, paths, top=None, minconf=0.0, out=out)
    lines = _lines(out.getvalue())

    assert failures == 1
    assert classifier.batches == [cli.PREDICT_BATCH_SIZE - 1, 3]  # the failed file is skipped
    assert lines[3]["error"]["type"] == "FileNotFound"
    top1 = lines[0]["predictions"][0]
    for i, line in enumerate(lines):
        if i == 3:
            continue
        full = line["predictions"]
        assert sorted(p["label"] for p in full) == sorted(LABELS)  # minconf 0 alone: all 1000
        assert sum(p["confidence"] for p in full) == pytest.approx(1.0, abs=1e-3)
        assert full[0]["label"] == top1["label"]  # same image, whichever batch it ran in
        assert full[0]["confidence"] == pytest.approx(top1["confidence"], abs=1e-4)


@pytest.mark.models
def test_predict_default_is_top_1_and_minconf_filters(image_dir: Path, lite0: Any) -> None:
    import io

    path = str(image_dir / "cat.jpg")
    out = io.StringIO()
    cli.predict_files(lite0, [path], top=None, minconf=None, out=out)
    cli.predict_files(lite0, [path], top=None, minconf=0.05, out=out)
    cli.predict_files(lite0, [path], top=2, minconf=0.999, out=out)
    default, over_5_percent, strict = _lines(out.getvalue())
    assert len(default["predictions"]) == 1
    assert default["predictions"][0] == over_5_percent["predictions"][0]
    assert all(p["confidence"] >= 0.05 for p in over_5_percent["predictions"])
    assert (
        strict["predictions"]
        == [p for p in over_5_percent["predictions"] if p["confidence"] >= 0.999][:2]
    )


@pytest.mark.models
def test_predict_file_over_the_size_limit_is_image_too_large(
    tmp_path: Path, lite0: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    from imagetagger.settings import DownloaderSettings

    big = tmp_path / "big.jpg"
    big.write_bytes(b"\xff" * 1025)
    monkeypatch.setattr(
        cli.predict, "DownloaderSettings", lambda: DownloaderSettings(max_image_bytes=1024)
    )
    out = io.StringIO()
    assert cli.predict_files(lite0, [str(big)], top=None, minconf=None, out=out) == 1
    assert _lines(out.getvalue()) == [
        {
            "filename": str(big),
            "error": {
                "type": "ImageTooLarge",
                "detail": "Image is larger than this service accepts.",
            },
        }
    ]


@pytest.mark.models
def test_predict_all_good_exits_0(image_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = cli.main(["predict", str(image_dir / "cat.jpg"), "--model", "efficientnet_lite0"])
    (line,) = _lines(capsys.readouterr().out)
    assert status == 0
    assert line["filename"] == str(image_dir / "cat.jpg")
    assert len(line["predictions"]) == 1


@pytest.mark.models
def test_predict_model_load_error_exits_1(
    image_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "none.pth"
    argv = ["predict", str(image_dir / "cat.jpg"), "--model", "efficientnet_lite0"]
    status = cli.main([*argv, "--weights-path", str(missing)])
    captured = capsys.readouterr()
    assert status == 1
    assert captured.out == ""
    assert "cannot load efficientnet_lite0" in captured.err
    assert str(missing) in captured.err


def test_allow_network_adds_to_the_downloaders_allowed_networks() -> None:
    config = {
        "applications": [
            {
                "name": "imagetagger",
                "deployments": [
                    {"name": "ImageTagger", "user_config": {"max_in_flight": 8}},
                    {"name": "Downloader", "user_config": {"allowed_networks": ["10.1.0.0/16"]}},
                ],
            }
        ]
    }
    result = serve_config.apply_allowed_networks(config, ["127.0.0.1/32", "10.1.0.0/16"])
    deployments = result["applications"][0]["deployments"]
    assert deployments[1]["user_config"]["allowed_networks"] == ["10.1.0.0/16", "127.0.0.1/32"]
    assert deployments[0] == {"name": "ImageTagger", "user_config": {"max_in_flight": 8}}
    assert config["applications"][0]["deployments"][1]["user_config"]["allowed_networks"] == [
        "10.1.0.0/16"
    ]
    with pytest.raises(ValueError):
        serve_config.apply_allowed_networks(config, ["not-a-cidr"])
