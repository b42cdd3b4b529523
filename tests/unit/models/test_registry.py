"""The model registry's structure, without TensorFlow, Keras or weights (``make test-fast``).

Every entry is complete, its loader module is found by name without importing it, its
input size is the one its builder is published with, its weight package is a project
dependency, and the image build and the docs follow the registry.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from imagetagger.models.options import check_model_name
from imagetagger.models.specs import MODEL_SPECS, ModelSpec, get_spec
from tests.paths import REPO_ROOT

ROOT = REPO_ROOT
DEPENDENCIES = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
SPECS = sorted(MODEL_SPECS.values(), key=lambda spec: spec.name)

# EfficientNet-Lite as published (width, depth, resolution): tensorflow/tpu,
# models/official/efficientnet/lite/efficientnet_lite_builder.py.
PUBLISHED_LITE = {
    "efficientnet_lite0": (1.0, 1.0, 224),
    "efficientnet_lite1": (1.0, 1.1, 240),
    "efficientnet_lite2": (1.1, 1.2, 260),
    "efficientnet_lite3": (1.2, 1.4, 280),
    "efficientnet_lite4": (1.4, 1.8, 300),
}


def _requirement_name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].replace("_", "-").lower()


def _loader_source(spec: ModelSpec) -> ast.Module:
    found = importlib.util.find_spec(spec.loader)  # imports the parent package, not the loader
    assert found is not None and found.origin is not None, f"{spec.name}: no module {spec.loader}"
    return ast.parse(Path(found.origin).read_text())


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.name)
def test_every_entry_is_complete(spec: ModelSpec) -> None:
    assert MODEL_SPECS[spec.name] is spec and get_spec(spec.name) is spec
    assert spec.architecture and spec.loader.startswith("imagetagger.models.")
    assert spec.input_size >= 32 and spec.crop_padding >= 0
    assert spec.weights_package or spec.weights_env or spec.keras_download, "no weight source"
    assert spec.weight_source
    if spec.keras_download is not None:
        assert spec.keras_download.url.endswith("/" + spec.keras_download.file)
        assert re.fullmatch(r"[0-9a-f]{32}", spec.keras_download.md5)
    if spec.weights_env is not None:
        import imagetagger.environment as environment

        assert spec.weights_env in vars(environment).values()  # named where every name is


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.name)
def test_loader_module_builds_and_loads(spec: ModelSpec) -> None:
    """The loader module defines ``build(spec, dtype)`` and ``load(spec, weights_path,
    cache_dir, dtype)``, the calls the runtimes and benchmarks make."""
    functions = {
        node.name: [arg.arg for arg in node.args.args]
        for node in _loader_source(spec).body
        if isinstance(node, ast.FunctionDef)
    }
    assert functions.get("build") == ["spec", "dtype"]
    assert functions.get("load") == ["spec", "weights_path", "cache_dir", "dtype"]


def test_registry_and_loaders_resolve_without_tensorflow() -> None:
    code = (
        "import importlib.util, os, sys; os.environ.pop('KERAS_BACKEND', None)\n"
        "from imagetagger.models.specs import MODEL_SPECS\n"
        "assert all(importlib.util.find_spec(s.loader) for s in MODEL_SPECS.values())\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'numpy') if m in sys.modules]\n"
        "print(heavy, os.environ['KERAS_BACKEND'])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split("\n")[-2] == "[] tensorflow"


def _keras_default_size(application: str) -> int:
    """The input size ``keras.applications.<application>`` is built for, read from its source."""
    found = importlib.util.find_spec("keras")
    assert found is not None and found.submodule_search_locations
    folder = Path(found.submodule_search_locations[0]) / "src" / "applications"
    for path in sorted(folder.glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and node.name == application:
                for call in ast.walk(node):
                    if (
                        isinstance(call, ast.Call)
                        and getattr(call.func, "id", "") == "EfficientNet"
                    ):
                        size = call.args[2]  # EfficientNet(width, depth, default_size, ...)
                        assert isinstance(size, ast.Constant)
                        return int(size.value)
                raise AssertionError(f"{application}: teach this test its default size")
    raise AssertionError(f"keras.applications has no {application}")


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.name)
def test_input_size_is_the_builders(spec: ModelSpec) -> None:
    args = spec.build_args
    if spec.architecture == "efficientnet_lite":
        assert set(args) == {"width", "depth"}
        assert PUBLISHED_LITE[spec.name] == (args["width"], args["depth"], spec.input_size)
    elif spec.architecture == "keras_application":
        assert _keras_default_size(str(args["application"])) == spec.input_size
    else:
        raise AssertionError(f"{spec.name}: add its builder's published input size here")


def test_weight_packages_are_pinned_dependencies() -> None:
    pinned = {_requirement_name(d): d for d in DEPENDENCIES}
    for spec in SPECS:
        if spec.pip_package is not None:
            assert spec.pip_package in pinned, f"pyproject.toml lacks {spec.pip_package}"
            assert "==" in pinned[spec.pip_package]  # the LiteRT cache is keyed on its bytes
    weights = {name for name in pinned if name.endswith("-pytorch-model")}
    assert weights == {spec.pip_package for spec in SPECS if spec.pip_package}


def _image_requirements():
    path = ROOT / "scripts" / "image_requirements.py"
    loaded = importlib.util.spec_from_file_location("image_requirements_for_registry", path)
    assert loaded is not None and loaded.loader is not None
    module = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(module)
    return module


def test_image_requirements_follow_the_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """A new entry and its dependency are all the image build needs."""
    script = _image_requirements()
    assert "efficientnet" not in re.sub(
        r'""".*?"""|"[^"\n]*"', "", Path(script.__file__).read_text(), flags=re.S
    )
    lite2 = get_spec("efficientnet_lite2")
    lite3 = dataclasses.replace(
        lite2, name="efficientnet_lite3", weights_package="efficientnet_lite3_pytorch_model"
    )
    monkeypatch.setitem(MODEL_SPECS, lite3.name, lite3)
    dependencies = [*DEPENDENCIES, "efficientnet-lite3-pytorch-model==0.1.0"]
    for spec in [*SPECS, lite3]:
        assert script.weight_package_for(spec.name) == spec.pip_package
        lean = {script.requirement_name(r) for r in script.select(dependencies, "lean", spec.name)}
        weights = {name for name in lean if name.endswith("-pytorch-model")}
        assert weights == ({spec.pip_package} if spec.pip_package else set())


def test_one_check_of_model_names() -> None:
    for check in (get_spec, check_model_name):
        with pytest.raises(ValueError) as info:
            check("resnet50")
        assert str(info.value) == (
            f"unknown model 'resnet50'; choose one of {', '.join(sorted(MODEL_SPECS))}"
        )
    assert check_model_name("efficientnet_lite2") == "efficientnet_lite2"


def test_models_doc_lists_every_entry() -> None:
    """docs/MODELS.md's table: one row per entry, with its input size and weights."""
    text = (ROOT / "docs" / "MODELS.md").read_text()
    rows = re.findall(r"^\| `(\w+)`[^|]*\| (\d+) \| (.+) \|$", text, flags=re.M)
    assert {name: int(size) for name, size, _ in rows} == {
        spec.name: spec.input_size for spec in SPECS
    }
    for name, _, weights in rows:
        spec = get_spec(name)
        if spec.pip_package:
            assert spec.pip_package in weights
        if spec.weights_env:
            assert spec.weights_env in weights
