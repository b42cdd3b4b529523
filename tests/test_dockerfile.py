"""The Dockerfile: hadolint-clean, and every promise it makes checkable without Docker.

No Docker daemon is needed: the file is parsed, its build-time commands that do not
need the network are run here, and its HEALTHCHECK command is run against a local
HTTP server.
"""

from __future__ import annotations

import fnmatch
import http.server
import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagetagger.models.specs import MODEL_SPECS

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, rest = full.partition(" ")
        result.append((keyword.upper(), rest.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return result


INSTRUCTIONS = _instructions()


def _all(keyword: str) -> list[str]:
    return [rest for kw, rest in INSTRUCTIONS if kw == keyword]


def _index(keyword: str, contains: str = "") -> int:
    return next(
        i for i, (kw, rest) in enumerate(INSTRUCTIONS) if kw == keyword and contains in rest
    )


def _env() -> dict[str, str]:
    env: dict[str, str] = {}
    for rest in _all("ENV"):
        for item in shlex.split(rest):
            key, _, value = item.partition("=")
            env[key] = value
    return env


def _args() -> dict[str, str]:
    return dict(rest.partition("=")[::2] for rest in _all("ARG"))


def _json_list(text: str) -> list[str]:
    value = json.loads(text)
    assert isinstance(value, list), "use the exec (JSON) form"
    return value


def test_hadolint_reports_nothing() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(hadolint).is_file():
        pytest.skip("hadolint is not installed (pip install -e '.[test]' installs it)")
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_base_image_and_build_args() -> None:
    assert _all("FROM") == ["python:3.11-slim"]
    args = _args()
    assert args["MODEL"] == "efficientnet_lite2"
    assert args["MODEL"] in MODEL_SPECS
    assert args["WITH_CUDA"] == "false"


def test_environment() -> None:
    env = _env()
    assert env["PORT"] == "8000"
    assert env["IMAGETAGGER_CACHE_DIR"] == "/opt/imagetagger/cache"
    assert env["KERAS_HOME"].startswith(env["IMAGETAGGER_CACHE_DIR"] + "/")
    assert env["IMAGETAGGER_MODEL"] == "${MODEL}"
    assert _all("EXPOSE") == ["8000"]


def test_runs_as_a_numeric_non_root_user() -> None:
    (user,) = _all("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and gid.isdigit()
    assert int(uid) != 0 and int(gid) != 0
    assert f"--uid {uid}" in INSTRUCTIONS[_index("RUN", "useradd")][1]
    # Everything after the installs runs as that user, the weight conversion included.
    user_at = _index("USER")
    assert _index("RUN", "pip install --no-cache-dir --no-deps .") < user_at
    assert _index("RUN", "load_model") > user_at


def test_both_runtimes_are_cached_at_build_time_for_the_chosen_model() -> None:
    run = INSTRUCTIONS[_index("RUN", "load_model")][1]
    assert "from imagetagger.models.runtimes import RuntimeOptions, load_model" in run
    assert "load_model('${MODEL}', RuntimeOptions(runtime=r))" in run
    assert "('tensorflow', 'litert')" in run
    from imagetagger.models.checksums import CACHE_DIR_ENV

    assert CACHE_DIR_ENV == "IMAGETAGGER_CACHE_DIR"  # the variable the ENV above sets


def test_environment_is_the_serving_mode() -> None:
    from imagetagger.serving_env import SERVING_ENV

    env = _env()
    assert {key: env.get(key) for key in SERVING_ENV} == SERVING_ENV


def test_every_pip_install_skips_the_cache() -> None:
    pip_runs = [rest for rest in _all("RUN") if "pip install" in rest]
    assert len(pip_runs) == 2
    for rest in pip_runs:
        for command in rest.split("&&"):
            if "pip install" in command:
                assert "--no-cache-dir" in command


def test_entrypoint_and_cmd_serve_the_default_config() -> None:
    (entrypoint,) = _all("ENTRYPOINT")
    (cmd,) = _all("CMD")
    argv = _json_list(entrypoint) + _json_list(cmd)
    assert argv == ["tini", "--", "imagetagger", "serve", "--config", "serve_config.yaml"]
    assert "tini" in INSTRUCTIONS[_index("RUN", "apt-get install")][1]


def _dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule, for the patterns used here: a path is out when it or a folder
    above it matches; ``**/name`` matches at any depth."""
    parts = path.split("/")
    for pattern in patterns:
        if pattern.startswith("**/"):
            if any(fnmatch.fnmatch(part, pattern[3:]) for part in parts):
                return True
        elif any(fnmatch.fnmatch("/".join(parts[:i]), pattern) for i in range(1, len(parts) + 1)):
            return True
    return False


def test_copied_sources_exist_and_are_not_ignored() -> None:
    patterns = _dockerignore_patterns()
    copied = []
    for rest in _all("COPY"):
        *sources, _dest = rest.split()
        copied += sources
    for source in copied:
        assert (ROOT / source).exists(), source
        assert not _ignored(source, patterns), source
    assert "serve_config.yaml" in copied
    assert "configs" in copied


def test_dockerignore_keeps_local_state_out() -> None:
    patterns = _dockerignore_patterns()
    for path in (".venv", ".git", ".pytest_cache", ".ruff_cache", "tests", "imagetagger.egg-info"):
        assert _ignored(path, patterns), path
    assert _ignored("imagetagger/__pycache__", patterns)


def _requirements_commands() -> list[str]:
    """The dependency step's commands up to (not including) the pip install."""
    run = INSTRUCTIONS[_index("RUN", "tomllib")][1]
    commands = [c.strip() for c in run.split(" && ")]
    return commands[: next(i for i, c in enumerate(commands) if c.startswith("pip install"))]


@pytest.mark.parametrize("with_cuda", ["false", "true"])
def test_requirement_step_installs_the_project_dependencies(with_cuda: str, tmp_path: Path) -> None:
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    requirements = tmp_path / "requirements.txt"
    script = "set -e\n" + "\n".join(_requirements_commands())
    assert script.count("/tmp/requirements.txt") == 2  # written, then rewritten
    script = script.replace("/tmp/requirements.txt", str(requirements))
    script = script.replace("python ", f"{shlex.quote(sys.executable)} ", 1)
    env = {**os.environ, "WITH_CUDA": with_cuda}
    subprocess.run(["sh", "-c", script], cwd=tmp_path, env=env, check=True)
    written = requirements.read_text().splitlines()
    expected = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    if with_cuda == "true":
        tensorflow = [d for d in expected if d.startswith("tensorflow")]
        assert len(tensorflow) == 1
        expected = [
            d.replace("tensorflow", "tensorflow[and-cuda]", 1) if d in tensorflow else d
            for d in expected
        ]
    assert written == expected


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        code = self.status if self.path == "/-/healthz" else 404
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b"success" if code == 200 else b"no")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[tuple[http.server.HTTPServer, type[_Health]]]:
    handler = type("Handler", (_Health,), {})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, handler
    server.shutdown()
    server.server_close()


def _healthcheck(port: int) -> int:
    rest = _all("HEALTHCHECK")[0]
    argv = _json_list(rest[rest.index("CMD") + len("CMD") :].strip())
    assert argv[0] == "python"
    env = {**os.environ, "PORT": str(port)}
    return subprocess.run([sys.executable, *argv[1:]], env=env, capture_output=True).returncode


def test_healthcheck_follows_the_proxy_health_endpoint(health_server) -> None:
    server, handler = health_server
    port = server.server_address[1]
    assert _healthcheck(port) == 0
    handler.status = 503  # Serve's proxy answers 503 while it is draining
    assert _healthcheck(port) != 0
    server.shutdown()
    server.server_close()
    assert _healthcheck(port) != 0  # nothing listening


def test_healthcheck_timings() -> None:
    rest = _all("HEALTHCHECK")[0]
    options = dict(o.lstrip("-").split("=") for o in rest[: rest.index("CMD")].split())
    assert set(options) == {"interval", "timeout", "start-period", "retries"}
    # The urllib timeout inside the command is shorter than Docker's, so it reports first.
    assert "timeout=4)" in rest
    assert int(options["timeout"].rstrip("s")) > 4
    assert int(options["start-period"].rstrip("s")) >= 120  # Ray start + model load
