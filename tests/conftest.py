"""Shared fixtures and the test markers. Loaded models are session-scoped: each is built
and warmed once per run.

Markers (``make test-fast`` runs what has none of them, ``make test`` everything):
``service`` for a Ray cluster with the app deployed (everything under
``tests/service``), ``ray`` for any other Ray (everything under ``tests/cluster``, and
the bulk job's ``local_ray`` fixture), ``models`` for real weights and model
conversions. The folders say which: ``service`` and ``ray`` follow from where a test is
(and the fixture it uses); ``models`` is set by the test modules, and here for the model
fixtures. The folders: ``unit/`` mirrors the library's modules (in-process, no Ray),
``clients/`` drives official clients against the app in-process, ``service/`` the real
service, ``cluster/`` multi-node Ray, ``bulk/`` the Ray Data job, ``repo/`` the
repository itself (layout, markers, docs, Dockerfile, configs, Makefile),
``benchmarks/`` the benchmark scripts' own logic. ``tests/repo/test_markers.py``
checks that ``make test-fast`` collects no test that starts Ray.
"""

from __future__ import annotations

from pathlib import Path

import pytest

SERVICE_TESTS = Path(__file__).parent / "service"
#: Multi-node Ray clusters of their own (in child processes).
CLUSTER_TESTS = Path(__file__).parent / "cluster"
MODEL_FIXTURES = frozenset(
    f"{name}_{kind}"
    for name in ("lite0", "lite2")
    for kind in ("classifier", "litert_classifier", "int8_classifier")
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if SERVICE_TESTS in item.path.parents:
            item.add_marker(pytest.mark.service)
        if "local_ray" in fixtures or CLUSTER_TESTS in item.path.parents:
            item.add_marker(pytest.mark.ray)
        if fixtures & MODEL_FIXTURES:
            item.add_marker(pytest.mark.models)


@pytest.fixture(scope="session")
def model_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A weight cache private to this test session (never the user's ~/.cache)."""
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="session")
def lite0_classifier(model_cache_dir: Path):
    from imagetagger.models.tensorflow_runtime import load_tensorflow_classifier  # Keras

    return load_tensorflow_classifier("efficientnet_lite0", cache_dir=model_cache_dir)


@pytest.fixture(scope="session")
def lite2_classifier(model_cache_dir: Path):
    from imagetagger.models.tensorflow_runtime import load_tensorflow_classifier

    return load_tensorflow_classifier("efficientnet_lite2", cache_dir=model_cache_dir)


def _litert(name: str, cache_dir: Path, precision: str):
    from imagetagger.models.litert import load_litert_classifier

    return load_litert_classifier(name, cache_dir=cache_dir, precision=precision, pool_size=2)


@pytest.fixture(scope="session")
def lite0_litert_classifier(model_cache_dir: Path):
    return _litert("efficientnet_lite0", model_cache_dir, "float32")


@pytest.fixture(scope="session")
def lite2_litert_classifier(model_cache_dir: Path):
    return _litert("efficientnet_lite2", model_cache_dir, "float32")


@pytest.fixture(scope="session")
def lite0_int8_classifier(model_cache_dir: Path):
    return _litert("efficientnet_lite0", model_cache_dir, "int8")


@pytest.fixture(scope="session")
def lite2_int8_classifier(model_cache_dir: Path):
    return _litert("efficientnet_lite2", model_cache_dir, "int8")
