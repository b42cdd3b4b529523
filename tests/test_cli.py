"""The ``imagetagger`` command: argument checks, config overrides, signals, local predictions.

``serve`` is exercised for real as a subprocess, but with a fake ``serve`` executable
first on PATH, so no Ray cluster starts: the fake records its arguments, the config it
was given and the signals it receives.
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

from imagetagger import cli, serve_config
from imagetagger.labels import LABELS
from imagetagger.serving_env import SERVING_ENV

ROOT = Path(__file__).resolve().parent.parent
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


def test_apply_port_sets_port_and_keeps_host_and_input() -> None:
    original = json.loads(json.dumps(BASE_CONFIG))
    result = serve_config.apply_port(BASE_CONFIG, 9123)
    assert result["http_options"] == {"host": "0.0.0.0", "port": 9123}
    assert result["applications"] == BASE_CONFIG["applications"]
    assert original == BASE_CONFIG  # the input is not modified


def test_apply_port_none_keeps_the_file_port() -> None:
    result = serve_config.apply_port(BASE_CONFIG, None)
    assert result == BASE_CONFIG
    assert result is not BASE_CONFIG


def test_apply_port_creates_http_options_when_missing() -> None:
    assert serve_config.apply_port({"applications": []}, 8080) == {
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

FAKE_SERVE = """\
#!{python}
import json, os, signal, sys, time

record = os.environ["FAKE_SERVE_RECORD"]
mode = os.environ.get("FAKE_SERVE_MODE", "graceful")
config_path = sys.argv[2]
state = {{
    "argv": sys.argv[1:],
    "config": open(config_path).read(),
    "signals": [],
    "env": {{k: v for k, v in os.environ.items() if k.startswith("RAY_")}},
}}


def write():
    tmp = record + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f)
    os.replace(tmp, record)


def on_signal(signum, frame):
    state["signals"].append(signal.Signals(signum).name)
    write()
    if mode == "graceful" or signum == signal.SIGTERM:
        sys.exit(0)


signal.signal(signal.SIGINT, on_signal)
signal.signal(signal.SIGTERM, on_signal)
write()
if mode == "exit3":
    sys.exit(3)
if mode == "selfkill":
    os.kill(os.getpid(), signal.SIGKILL)
while True:
    time.sleep(0.05)
"""


def _wait_for(condition: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


class ServeRun:
    """``imagetagger serve`` in a subprocess, with the fake ``serve`` first on PATH."""

    def __init__(self, tmp_path: Path, mode: str, env: dict[str, str], extra: list[str]):
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        fake = bin_dir / "serve"
        fake.write_text(FAKE_SERVE.format(python=sys.executable))
        fake.chmod(0o755)
        config = tmp_path / "serve_config.yaml"
        config.write_text(yaml.safe_dump(BASE_CONFIG, sort_keys=False))
        self.record = tmp_path / "record.json"
        dropped = {"PORT", "IMAGETAGGER_MODEL", *SERVING_ENV}  # what `serve` gets is ours
        environ = {k: v for k, v in os.environ.items() if k not in dropped}
        environ.update(
            PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            FAKE_SERVE_RECORD=str(self.record),
            FAKE_SERVE_MODE=mode,
            **env,
        )
        self.process = subprocess.Popen(
            [sys.executable, "-m", "imagetagger.cli", "serve", "--config", str(config), *extra],
            env=environ,
            cwd=tmp_path,
            stderr=subprocess.PIPE,
            text=True,
        )

    def state(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.record.read_text())
        except FileNotFoundError:
            return None

    def wait_started(self) -> dict[str, Any]:
        return _wait_for(self.state)

    def wait_signals(self, count: int) -> list[str]:
        return _wait_for(lambda: len(self.state()["signals"]) >= count and self.state()["signals"])

    def finish(self) -> int:
        try:
            return self.process.wait(timeout=30)
        finally:
            if self.process.poll() is None:
                self.process.kill()


@pytest.fixture
def serve_run(tmp_path: Path):
    runs: list[ServeRun] = []

    def start(mode: str = "graceful", env: dict[str, str] | None = None, extra=()) -> ServeRun:
        run = ServeRun(tmp_path, mode, env or {}, list(extra))
        runs.append(run)
        return run

    yield start
    for run in runs:
        if run.process.poll() is None:
            run.process.kill()
            run.process.wait()


def test_serve_runs_serve_run_on_the_effective_config(serve_run) -> None:
    run = serve_run(env={"PORT": "7000", "IMAGETAGGER_MODEL": "efficientnet_lite0"})
    state = run.wait_started()
    assert state["argv"][0] == "run"
    assert len(state["argv"]) == 2
    config = yaml.safe_load(state["config"])
    assert config["http_options"] == {"host": "0.0.0.0", "port": 7000}
    assert config["applications"][0]["args"] == {
        "model": "efficientnet_lite0",
        "intra_op_threads": 2,
    }
    assert config["applications"][1] == BASE_CONFIG["applications"][1]

    run.process.send_signal(signal.SIGTERM)
    assert run.finish() == 0
    assert run.state()["signals"] == ["SIGINT"]  # Serve's graceful shutdown path
    assert not Path(state["argv"][1]).exists()  # the temporary config is removed


def test_serve_runs_serve_in_the_serving_mode(serve_run) -> None:
    run = serve_run(env={"RAY_SERVE_HAPROXY_NBTHREAD": "3"})  # exported values win
    env = run.wait_started()["env"]
    assert {key: env.get(key) for key in SERVING_ENV} == {
        **SERVING_ENV,
        "RAY_SERVE_HAPROXY_NBTHREAD": "3",
    }
    run.process.send_signal(signal.SIGTERM)
    assert run.finish() == 0


def test_serve_cli_options_override_env(serve_run) -> None:
    run = serve_run(
        env={"PORT": "7000", "IMAGETAGGER_MODEL": "efficientnet_lite0"},
        extra=["--port", "9001", "--model", "efficientnet_b3"],
    )
    config = yaml.safe_load(run.wait_started()["config"])
    assert config["http_options"]["port"] == 9001
    assert config["applications"][0]["args"]["model"] == "efficientnet_b3"
    run.process.send_signal(signal.SIGINT)
    assert run.finish() == 0
    assert run.state()["signals"] == ["SIGINT"]


def test_serve_keeps_the_file_port_without_overrides(serve_run) -> None:
    run = serve_run()
    config = yaml.safe_load(run.wait_started()["config"])
    assert config == BASE_CONFIG
    run.process.send_signal(signal.SIGTERM)
    assert run.finish() == 0


def test_second_signal_escalates_to_sigterm(serve_run) -> None:
    run = serve_run(mode="stubborn")
    run.wait_started()
    run.process.send_signal(signal.SIGTERM)
    assert run.wait_signals(1) == ["SIGINT"]
    assert run.process.poll() is None  # still shutting down gracefully
    run.process.send_signal(signal.SIGTERM)
    assert run.finish() == 0
    assert run.state()["signals"] == ["SIGINT", "SIGTERM"]


def test_serve_exit_status_is_passed_on(serve_run) -> None:
    run = serve_run(mode="exit3")
    assert run.finish() == 3


def test_serve_killed_child_gives_128_plus_signal(serve_run) -> None:
    run = serve_run(mode="selfkill")
    assert run.finish() == 128 + signal.SIGKILL


def test_serve_bad_env_port_is_an_error(serve_run) -> None:
    run = serve_run(env={"PORT": "eighty"})
    assert run.finish() == 1
    assert "$PORT: invalid port 'eighty'" in run.process.stderr.read()
    assert run.state() is None  # serve run never started


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
