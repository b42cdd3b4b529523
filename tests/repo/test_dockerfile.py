"""The Dockerfile: hadolint-clean, and every promise it makes checkable without Docker.

No Docker daemon is needed: the file is parsed, its build-time commands that do not
need the network are run here, and its HEALTHCHECK command is run against a local
HTTP server. `make container-check` (scripts/container_check.sh) builds the image and
checks the running container; it is not part of the test suite.
"""

from __future__ import annotations

import fnmatch
import http.server
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from imagetagger.models.specs import MODEL_SPECS
from tests.paths import REPO_ROOT

ROOT = REPO_ROOT
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


def _stages() -> dict[str, tuple[str, list[tuple[str, str]]]]:
    """Stage name -> (what it is FROM, its instructions after FROM)."""
    stages: dict[str, tuple[str, list[tuple[str, str]]]] = {}
    current: list[tuple[str, str]] | None = None
    for keyword, rest in INSTRUCTIONS:
        if keyword == "FROM":
            image, _, name = rest.partition(" AS ")
            current = []
            stages[name.strip()] = (image.strip(), current)
        elif current is not None:
            current.append((keyword, rest))
    return stages


STAGES = _stages()


def _in(stage: str, keyword: str) -> list[str]:
    return [rest for kw, rest in STAGES[stage][1] if kw == keyword]


def _global_args() -> dict[str, str]:
    first_from = _index("FROM")
    return dict(rest.partition("=")[::2] for kw, rest in INSTRUCTIONS[:first_from] if kw == "ARG")


def test_stages_and_their_order() -> None:
    """The last stage is the default target: the lean LiteRT image."""
    assert {name: image for name, (image, _) in STAGES.items()} == {
        "base": "${BASE_IMAGE}",
        "lean": "base",
        "build": "lean",
        "tensorflow": "build",
        "litert": "lean",
    }
    assert list(STAGES)[-1] == "litert"


def test_base_image_is_pinned_by_tag_with_its_digest_noted() -> None:
    base = _global_args()["BASE_IMAGE"]
    name, _, tag = base.partition(":")
    assert name == "python"
    # a full version and the Debian release, not a floating tag like 3.11-slim
    assert re.fullmatch(r"3\.11\.\d+-slim-bookworm", tag), tag
    digest = re.search(r"^#\s+sha256:([0-9a-f]{64})$", DOCKERFILE.read_text(), re.MULTILINE)
    assert digest, "the base's digest belongs in a comment beside the tag"


def test_build_args() -> None:
    assert _global_args()["MODEL"] == "efficientnet_lite2"
    assert _global_args()["MODEL"] in MODEL_SPECS
    for stage in ("base", "lean", "build"):
        assert "MODEL" in _in(stage, "ARG"), stage  # a stage sees a global ARG only so
    assert _in("build", "ARG") == ["MODEL", "WITH_CUDA=false"]


def test_environment() -> None:
    env = _env()
    assert env["PORT"] == "8000"
    # `-p 8000:8000` reaches the service only if it listens beyond the container's
    # loopback; imagetagger serve's default (serve_config.yaml) is loopback.
    from imagetagger.environment import HOST_ENV

    assert env[HOST_ENV] == "0.0.0.0"
    assert env["IMAGETAGGER_CACHE_DIR"] == "/opt/imagetagger/cache"
    assert env["KERAS_HOME"].startswith(env["IMAGETAGGER_CACHE_DIR"] + "/")
    assert env["IMAGETAGGER_MODEL"] == "${MODEL}"
    from imagetagger.environment import PORT_FILE_ENV

    assert env[PORT_FILE_ENV].startswith("/tmp/")  # writable by the non-root user
    assert _all("EXPOSE") == ["8000"]
    assert not any(_in(stage, "ENV") for stage in STAGES if stage != "base")


def test_runs_as_a_numeric_non_root_user() -> None:
    users = _all("USER")
    assert users and len(set(users)) == 1
    uid, _, gid = users[0].partition(":")
    assert uid.isdigit() and gid.isdigit()
    assert int(uid) != 0 and int(gid) != 0
    assert f"--uid {uid}" in INSTRUCTIONS[_index("RUN", "useradd")][1]
    # The weight conversion runs as that user; both runtime images end as it.
    build = [kw for kw, _ in STAGES["build"][1]]
    assert build.index("USER") < len(build) - 1 and build[-1] == "RUN"
    assert [kw for kw, _ in STAGES["litert"][1]][-1] == "USER"
    assert "USER" not in [kw for kw, _ in STAGES["tensorflow"][1]]  # inherited from build
    (copied,) = [rest for rest in _in("litert", "COPY") if "--from=build" in rest]
    assert f"--chown={uid}:{gid}" in copied


def test_the_build_stage_caches_every_runtime_for_the_chosen_model() -> None:
    (run,) = [rest for rest in _in("build", "RUN") if "load_model" in rest]
    assert "from imagetagger.models.runtimes import RuntimeOptions as O, load_model" in run
    assert "load_model('${MODEL}', O(runtime='tensorflow'))" in run
    assert "load_model('${MODEL}', O(runtime='litert', precision=p))" in run
    assert "('float32', 'int8')" in run
    from imagetagger.models.checksums import CACHE_DIR_ENV
    from imagetagger.models.litert import flatbuffer_file

    assert CACHE_DIR_ENV == "IMAGETAGGER_CACHE_DIR"  # the variable the ENV above sets
    # The lean image copies exactly the flatbuffers and their sidecars.
    (copied,) = [rest for rest in _in("litert", "COPY") if "--from=build" in rest]
    *sources, dest = copied.split()[2:]
    assert sources == [_env()["IMAGETAGGER_CACHE_DIR"] + "/*.tflite*"]
    assert dest.rstrip("/") == _env()["IMAGETAGGER_CACHE_DIR"]
    spec = MODEL_SPECS[_global_args()["MODEL"]]
    for precision in ("float32", "int8"):
        name = flatbuffer_file(spec, Path("/c"), precision=precision).name
        assert fnmatch.fnmatch(name, "*.tflite*")
        assert fnmatch.fnmatch(name + ".sha256", "*.tflite*")


def test_the_lean_image_has_no_tensorflow() -> None:
    (check,) = [rest for rest in _in("litert", "RUN") if "find_spec" in rest]
    assert "find_spec('tensorflow') is None" in check
    assert "find_spec('keras') is None" in check
    for stage in ("base", "lean", "litert"):
        for rest in _in(stage, "RUN"):
            assert "image_requirements.py tensorflow" not in rest, stage


def test_environment_is_the_serving_mode() -> None:
    from imagetagger.serving.serving_env import SERVING_ENV

    env = _env()
    assert {key: env.get(key) for key in SERVING_ENV} == SERVING_ENV


def test_every_pip_install_skips_the_cache() -> None:
    pip_runs = [rest for rest in _all("RUN") if "pip install" in rest]
    assert len(pip_runs) == 4  # lean deps, TensorFlow, the project in build and in litert
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
    # Set once in base, so both runtime targets inherit them.
    assert _in("base", "ENTRYPOINT") == [entrypoint]
    assert _in("base", "HEALTHCHECK") == _all("HEALTHCHECK")
    for stage in ("tensorflow", "litert"):
        copied = [rest.split()[0] for rest in _in(stage, "COPY")]
        assert {"serve_config.yaml", "configs"} <= set(copied), stage


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
        if rest.startswith("--from="):
            continue  # from another stage, not the build context
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


def _requirements_runs() -> dict[str, str]:
    """Stage -> the shell command of its image_requirements.py RUN, up to the pip install."""
    found = {}
    for stage in STAGES:
        for rest in _in(stage, "RUN"):
            if "image_requirements.py" in rest:
                found[stage] = rest.split(" && ")[0]
    return found


def _load_requirements_script() -> ModuleType:
    path = ROOT / "scripts" / "image_requirements.py"
    spec = importlib.util.spec_from_file_location("image_requirements", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


image_requirements = _load_requirements_script()
DEPENDENCIES = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]


def _run_requirement_step(stage: str, tmp_path: Path, **build_args: str) -> list[str]:
    """Run the stage's requirements command as the build would, in a copy of its files."""
    for copied in _in("lean", "COPY"):  # only these files: the script's imports among them
        *sources, destination = copied.split()
        (tmp_path / destination).mkdir(parents=True, exist_ok=True)
        for source in sources:
            shutil.copy(ROOT / source, tmp_path / destination)
    command = _requirements_runs()[stage]
    output = tmp_path / "requirements.txt"
    command = command.replace("/tmp/requirements.txt", str(output))
    command = command.replace("python ", f"{shlex.quote(sys.executable)} ", 1)
    args = {"MODEL": _global_args()["MODEL"], "WITH_CUDA": "false", **build_args}
    env = {**os.environ, **args}
    subprocess.run(["sh", "-c", "set -e\n" + command], cwd=tmp_path, env=env, check=True)
    return output.read_text().splitlines()


def test_requirement_steps_are_in_the_lean_and_build_stages() -> None:
    assert set(_requirements_runs()) == {"lean", "build"}


@pytest.mark.parametrize("model", sorted(MODEL_SPECS))
def test_lean_requirements_are_the_project_minus_tensorflow_and_other_weights(
    model: str, tmp_path: Path
) -> None:
    written = _run_requirement_step("lean", tmp_path, MODEL=model)
    names = {image_requirements.requirement_name(r) for r in written}
    assert not names & {"tensorflow", "keras"}
    weights = {n for n in names if n.endswith("-pytorch-model")}
    package = MODEL_SPECS[model].weights_package
    assert weights == (set() if package is None else {package.replace("_", "-")})
    assert image_requirements.weight_package_for(model) == (
        None if package is None else package.replace("_", "-")
    )
    # every other dependency, exactly as pyproject.toml states it
    expected = [
        d
        for d in DEPENDENCIES
        if image_requirements.requirement_name(d) not in {"tensorflow", "keras"}
        and not image_requirements.requirement_name(d).endswith("-pytorch-model")
    ]
    assert [r for r in written if not r.split("=")[0].endswith("-pytorch-model")] == expected


@pytest.mark.parametrize("with_cuda", ["false", "true"])
def test_build_requirements_add_tensorflow(with_cuda: str, tmp_path: Path) -> None:
    written = _run_requirement_step("build", tmp_path, WITH_CUDA=with_cuda)
    tensorflow = [d for d in DEPENDENCIES if d.startswith("tensorflow")]
    keras = [d for d in DEPENDENCIES if d.startswith("keras")]
    assert len(tensorflow) == 1 and len(keras) == 1
    if with_cuda == "true":
        tensorflow = [tensorflow[0].replace("tensorflow", "tensorflow[and-cuda]", 1)]
    assert written == tensorflow + keras
    lean = _run_requirement_step("lean", tmp_path)
    assert len(lean) + len(written) + 2 == len(DEPENDENCIES)  # two other weight packages


def test_requirements_script_refuses_an_unknown_model_or_a_missing_weight_package() -> None:
    with pytest.raises(ValueError, match="unknown model 'efficientnet_lite9'"):
        image_requirements.select(DEPENDENCIES, "lean", "efficientnet_lite9")
    without = [d for d in DEPENDENCIES if not d.startswith("efficientnet-lite0-")]
    with pytest.raises(ValueError, match="no weight package"):
        image_requirements.select(without, "lean", "efficientnet_lite0")


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


def _healthcheck(port: int, **env: str) -> int:
    rest = _all("HEALTHCHECK")[0]
    argv = _json_list(rest[rest.index("CMD") + len("CMD") :].strip())
    assert argv[0] == "python"
    environ = {k: v for k, v in os.environ.items() if k not in ("PORT", "IMAGETAGGER_PORT_FILE")}
    environ.update({"PORT": str(port), **env})
    return subprocess.run([sys.executable, *argv[1:]], env=environ, capture_output=True).returncode


def test_healthcheck_follows_the_proxy_health_endpoint(health_server) -> None:
    server, handler = health_server
    port = server.server_address[1]
    assert _healthcheck(port) == 0
    handler.status = 503  # Serve's proxy answers 503 while it is draining
    assert _healthcheck(port) != 0
    server.shutdown()
    server.server_close()
    assert _healthcheck(port) != 0  # nothing listening


def test_healthcheck_follows_the_port_serve_wrote(health_server, tmp_path: Path) -> None:
    """``serve --port N`` with $PORT still 8000: the probe reads the port file."""
    server, _ = health_server
    port = server.server_address[1]
    port_file = tmp_path / "serve.port"
    wrong = port + 1 if port < 65535 else port - 1
    assert _healthcheck(wrong, IMAGETAGGER_PORT_FILE=str(port_file)) != 0  # not written yet
    port_file.write_text(f"{port}\n")
    assert _healthcheck(wrong, IMAGETAGGER_PORT_FILE=str(port_file)) == 0
    port_file.write_text("garbage")
    assert _healthcheck(port, IMAGETAGGER_PORT_FILE=str(port_file)) == 0  # falls back to $PORT


def test_probe_port_order() -> None:
    from imagetagger.healthcheck import probe_port

    assert probe_port({}) == 8000
    assert probe_port({"PORT": "8124"}) == 8124
    assert probe_port({"PORT": "0"}) == 8000
    assert probe_port({"PORT": "x", "IMAGETAGGER_PORT_FILE": "/nonexistent/p"}) == 8000


def test_healthcheck_timings() -> None:
    rest = _all("HEALTHCHECK")[0]
    options = dict(o.lstrip("-").split("=") for o in rest[: rest.index("CMD")].split())
    assert set(options) == {"interval", "timeout", "start-period", "retries"}
    # The probe's own timeout is shorter than Docker's, so it reports first.
    from imagetagger.healthcheck import TIMEOUT_S

    assert int(options["timeout"].rstrip("s")) > TIMEOUT_S
    assert int(options["start-period"].rstrip("s")) >= 120  # Ray start + model load
