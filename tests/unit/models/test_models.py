"""The model layer: EfficientNet-Lite graph and weights, cache, B3 sources, the TensorFlow
runtime (the registry's structure: test_registry.py, without TensorFlow).

Predictions use real photos from scikit-image and the real ImageNet weights; the
loaded Lite models come from session fixtures in conftest.py.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pickle
import socket
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import skimage.data
from PIL import Image

from imagetagger.errors import ModelLoadError
from imagetagger.images import center_crop_resize
from imagetagger.labels import LABELS
from imagetagger.models import get_spec, keras_apps, lite_loader, weight_cache
from imagetagger.models.efficientnet_lite import assign_torch_weights, block_args, round_filters
from imagetagger.models.sources import package_weights_file
from imagetagger.models.tensorflow_runtime import TensorFlowClassifier, load_tensorflow_classifier
from imagetagger.models.torch_legacy import read_state_dict
from tests import cache_damage

pytestmark = pytest.mark.models  # real weights and conversions: minutes, not seconds
LITE_FIXTURES = {"efficientnet_lite0": "lite0_classifier", "efficientnet_lite2": "lite2_classifier"}
B3 = get_spec("efficientnet_b3")
assert B3.weights_env is not None and B3.keras_download is not None
WEIGHTS_ENV, IMAGENET_URL = B3.weights_env, B3.keras_download.url


def center_crop(image: np.ndarray, size: int, padding: int = 32) -> np.ndarray:
    """The evaluation crop, as the decoder makes it (imagetagger.images)."""
    return center_crop_resize(Image.fromarray(image), size, padding)


PHOTOS = {
    "chelsea": skimage.data.chelsea,
    "coffee": skimage.data.coffee,
    "camera": skimage.data.camera,
    "motorcycle_left": lambda: skimage.data.stereo_motorcycle()[0],
}


def photo_batch(size: int) -> np.ndarray:
    return np.stack([center_crop(load(), size) for load in PHOTOS.values()])


def top_labels(probs: np.ndarray, k: int) -> list[str]:
    return [LABELS[i] for i in np.argsort(probs)[::-1][:k]]


@pytest.fixture(params=sorted(LITE_FIXTURES))
def lite_classifier(request: pytest.FixtureRequest) -> TensorFlowClassifier:
    return request.getfixturevalue(LITE_FIXTURES[request.param])


def _run_python(code: str, **env: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1]


# --- architecture ---


def test_parameter_counts(
    lite0_classifier: TensorFlowClassifier, lite2_classifier: TensorFlowClassifier
) -> None:
    assert lite0_classifier.model.count_params() == 4_694_024
    assert lite2_classifier.model.count_params() == 6_150_168
    assert lite_loader.build(get_spec("efficientnet_lite1")).count_params() == 5_470_344


def test_lite_layouts() -> None:
    lite0 = block_args(1.0, 1.0)
    lite2 = block_args(1.1, 1.2)
    assert len(lite0) == 16 and len(lite2) == 21 and len(block_args(1.0, 1.1)) == 21
    assert lite2[0].input_filters == 32  # stem fixed
    assert [b.output_filters for b in lite2 if b.strides == 2] == [24, 48, 88, 208]
    assert round_filters(112, 1.1) == 120 and round_filters(320, 1.1) == 352
    assert not lite0[0].has_expand and all(b.has_expand for b in lite0[1:])
    assert sum(b.has_skip for b in lite0) == 9


def test_graph_uses_only_keras_layers(lite0_classifier: TensorFlowClassifier) -> None:
    model = lite0_classifier.model
    assert {type(layer).__module__.split(".")[0] for layer in model.layers} == {"keras"}
    names = {type(layer).__name__ for layer in model.layers}
    assert "Rescaling" in names  # normalisation lives inside the model
    assert model.input_shape == (None, 224, 224, 3)
    assert model.output_shape == (None, 1000)


def test_assign_rejects_a_state_dict_that_does_not_fit() -> None:
    model = lite_loader.build(get_spec("efficientnet_lite0"))
    state = read_state_dict(package_weights_file(get_spec("efficientnet_lite0")))

    with pytest.raises(ValueError, match=r"lacks weights for layers: \['logits'\]"):
        assign_torch_weights(model, {k: v for k, v in state.items() if not k.startswith("_fc.")})
    with pytest.raises(ValueError, match="modules the model lacks"):
        assign_torch_weights(model, {**state, "_blocks.99._bn0.weight": np.zeros(3)})
    with pytest.raises(ValueError, match=r"_fc: expected tensors \['bias', 'weight'\]"):
        assign_torch_weights(model, {k: v for k, v in state.items() if k != "_fc.bias"})
    bad = dict(state, **{"_conv_stem.weight": np.zeros((16, 3, 3, 3), np.float32)})
    with pytest.raises(ValueError, match="_conv_stem: shapes"):
        assign_torch_weights(model, bad)


# --- real predictions ---


def test_real_photos(lite_classifier: TensorFlowClassifier) -> None:
    probs = lite_classifier.predict_proba(photo_batch(lite_classifier.spec.input_size))
    chelsea, coffee, camera, motorcycle = probs

    assert top_labels(chelsea, 1)[0] in {"tabby", "tiger_cat", "Egyptian_cat"}
    assert top_labels(coffee, 1) == ["espresso"]
    assert "tripod" in top_labels(camera, 3)
    assert {"moped", "motor_scooter"} & set(top_labels(motorcycle, 2))


def test_output_is_a_float32_distribution(lite_classifier: TensorFlowClassifier) -> None:
    size = lite_classifier.spec.input_size
    probs = lite_classifier.predict_proba(photo_batch(size))
    assert probs.dtype == np.float32 and probs.shape == (4, 1000)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert (probs >= 0).all()


def test_batch_size_does_not_change_results_or_retrace(
    lite0_classifier: TensorFlowClassifier,
) -> None:
    batch = photo_batch(224)
    together = lite0_classifier.predict_proba(batch)
    for i in range(len(batch)):
        alone = lite0_classifier.predict_proba(batch[i : i + 1])
        np.testing.assert_allclose(alone[0], together[i], atol=1e-5)
    lite0_classifier.predict_proba(batch[:3])
    lite0_classifier.predict_proba(np.concatenate([batch, batch]))
    assert lite0_classifier.graph_function is not None
    assert lite0_classifier.graph_function.experimental_get_tracing_count() == 1


def test_predict_proba_validates_input(lite0_classifier: TensorFlowClassifier) -> None:
    good = np.zeros((2, 224, 224, 3), np.uint8)
    with pytest.raises(ValueError, match="uint8"):
        lite0_classifier.predict_proba(good.astype(np.float32))
    with pytest.raises(ValueError, match=r"shape \(N, 224, 224, 3\)"):
        lite0_classifier.predict_proba(np.zeros((2, 260, 260, 3), np.uint8))
    with pytest.raises(ValueError, match="shape"):
        lite0_classifier.predict_proba(good[0])
    empty = lite0_classifier.predict_proba(good[:0])
    assert empty.shape == (0, 1000) and empty.dtype == np.float32


def test_mixed_float16_keeps_float32_output(
    model_cache_dir: Path, lite0_classifier: TensorFlowClassifier
) -> None:
    mixed = load_tensorflow_classifier("efficientnet_lite0", cache_dir=model_cache_dir,
                            compute_dtype="mixed_float16")  # fmt: skip
    assert mixed.model.get_layer("stem_conv").compute_dtype == "float16"
    assert keras.config.dtype_policy().name == "float32"  # global policy untouched
    batch = photo_batch(224)
    probs = mixed.predict_proba(batch)
    assert probs.dtype == np.float32
    reference = lite0_classifier.predict_proba(batch)
    np.testing.assert_allclose(probs, reference, atol=2e-2)
    assert (probs.argmax(axis=1) == reference.argmax(axis=1)).all()


def test_rejects_unknown_compute_dtype(model_cache_dir: Path) -> None:
    with pytest.raises(ValueError, match="compute_dtype"):
        load_tensorflow_classifier(
            "efficientnet_lite0", cache_dir=model_cache_dir, compute_dtype="int8"
        )


def test_jax_backend_gives_the_same_probabilities(
    model_cache_dir: Path, lite0_classifier: TensorFlowClassifier, tmp_path: Path
) -> None:
    batch = photo_batch(224)[:1]  # one batch size: JAX compiles once per shape
    np.save(tmp_path / "batch.npy", batch)
    code = (
        "import sys, numpy as np\n"
        "from pathlib import Path\n"
        "import keras\n"
        "from imagetagger.models.tensorflow_runtime import load_tensorflow_classifier as load\n"
        f"clf = load('efficientnet_lite0', cache_dir=Path({str(model_cache_dir)!r}))\n"
        f"np.save({str(tmp_path / 'jax.npy')!r}, "
        f"clf.predict_proba(np.load({str(tmp_path / 'batch.npy')!r})))\n"
        "print(keras.backend.backend())"
    )
    assert _run_python(code, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu") == "jax"
    np.testing.assert_allclose(
        np.load(tmp_path / "jax.npy"), lite0_classifier.predict_proba(batch), atol=1e-4
    )


# --- weight cache ---


def _cache_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("efficientnet_lite0-*.weights.h5"))


@pytest.fixture
def conversions(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Record every torch-file conversion the loader performs."""
    calls: list[Path] = []

    def spy(source):
        calls.append(Path(source))
        return read_state_dict(source)

    monkeypatch.setattr(lite_loader, "read_state_dict", spy)
    return calls


def test_cache_is_written_then_used(tmp_path: Path, conversions: list[Path]) -> None:
    started = time.perf_counter()
    first = load_tensorflow_classifier("efficientnet_lite0", cache_dir=tmp_path)
    converted_s = time.perf_counter() - started
    assert len(conversions) == 1
    (cached,) = _cache_files(tmp_path)
    sidecar = cached.with_name(cached.name + ".sha256")
    assert sidecar.read_text().strip() == weight_cache.file_sha256(cached)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left
    assert {p.stat().st_mode & 0o777 for p in (cached, sidecar)} == {0o644}

    started = time.perf_counter()
    second = load_tensorflow_classifier("efficientnet_lite0", cache_dir=tmp_path)
    cached_s = time.perf_counter() - started
    assert len(conversions) == 1  # the torch file was not read again
    batch = photo_batch(224)
    np.testing.assert_array_equal(first.predict_proba(batch), second.predict_proba(batch))
    print(f"lite0 load: converted {converted_s:.2f}s, from cache {cached_s:.2f}s")


@pytest.mark.parametrize("damage", cache_damage.DAMAGES)
def test_damaged_cache_is_rebuilt(
    tmp_path: Path, conversions: list[Path], lite0_classifier: TensorFlowClassifier, damage, caplog
) -> None:
    load_tensorflow_classifier("efficientnet_lite0", cache_dir=tmp_path)
    (cached,) = _cache_files(tmp_path)
    damage(cached)

    with caplog.at_level(logging.WARNING, logger="imagetagger.models.weight_cache"):
        rebuilt = load_tensorflow_classifier("efficientnet_lite0", cache_dir=tmp_path)

    assert len(conversions) == 2
    sidecar = cached.with_name(cached.name + ".sha256")
    assert sidecar.read_text().strip() == weight_cache.file_sha256(cached)
    batch = photo_batch(224)
    np.testing.assert_allclose(
        rebuilt.predict_proba(batch), lite0_classifier.predict_proba(batch), atol=1e-6
    )
    if damage is not cache_damage.drop_sidecar:
        assert "Ignoring unusable weight cache" in caplog.text


def test_cache_dir_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGETAGGER_CACHE_DIR", str(tmp_path / "env-cache"))
    assert weight_cache.default_cache_dir() == tmp_path / "env-cache"
    load_tensorflow_classifier("efficientnet_lite0")
    assert len(_cache_files(tmp_path / "env-cache")) == 1

    monkeypatch.delenv("IMAGETAGGER_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert weight_cache.default_cache_dir() == tmp_path / ".cache" / "imagetagger"


def test_unwritable_cache_still_loads(tmp_path: Path, caplog) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with caplog.at_level(logging.WARNING, logger="imagetagger.models.lite_loader"):
        classifier = load_tensorflow_classifier("efficientnet_lite0", cache_dir=not_a_dir)
    assert "Could not cache efficientnet_lite0 weights" in caplog.text
    assert top_labels(classifier.predict_proba(photo_batch(224))[1], 1) == ["espresso"]


# --- weight sources that fail ---


def test_missing_lite_weights_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pth"
    with pytest.raises(ModelLoadError) as info:
        load_tensorflow_classifier(
            "efficientnet_lite0", weights_path=str(missing), cache_dir=tmp_path
        )
    message = str(info.value)
    assert "efficientnet_lite0" in message and str(missing) in message
    assert "argument weights_path" in message and "not found" in message


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("kind", ["garbage", "exploit", "other-variant"])
def test_unusable_lite_weights_file(tmp_path: Path, kind: str) -> None:
    if kind == "garbage":
        source = tmp_path / "garbage.pth"
        source.write_bytes(b"\x00" * 64)
    elif kind == "exploit":
        source = tmp_path / "exploit.pth"
        source.write_bytes(pickle.dumps(_Exploit(tmp_path / "pwned"), protocol=2))
    else:  # real weights, but of lite2: shapes do not fit lite0
        source = package_weights_file(get_spec("efficientnet_lite2"))
    cache = tmp_path / "cache"

    with pytest.raises(ModelLoadError) as info:
        load_tensorflow_classifier("efficientnet_lite0", weights_path=str(source), cache_dir=cache)

    message = str(info.value)
    assert "'efficientnet_lite0'" in message and str(source) in message and "unusable" in message
    assert not (tmp_path / "pwned").exists()
    assert not cache.exists() or not list(cache.iterdir())


def test_missing_weight_package_names_it() -> None:
    fake = dataclasses.replace(
        get_spec("efficientnet_lite0"), weights_package="no_such_weights_pkg"
    )
    with pytest.raises(ModelLoadError, match="'no-such-weights-pkg' is not installed"):
        package_weights_file(fake)


# --- EfficientNetB3 ---


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """Make name resolution and connects fail locally: nothing leaves this machine."""
    lookups: list[tuple] = []

    def no_dns(*args, **kwargs):
        lookups.append(args)
        raise socket.gaierror(socket.EAI_NONAME, "offline (test)")

    def no_connect(self, address):
        raise OSError("offline (test)")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    monkeypatch.setattr(socket.socket, "connect", no_connect)
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    return lookups


@pytest.mark.timeout(120)
def test_b3_offline_without_weights_names_every_source(tmp_path: Path, offline) -> None:
    started = time.perf_counter()
    with pytest.raises(ModelLoadError) as info:
        load_tensorflow_classifier("efficientnet_b3", cache_dir=tmp_path)
    assert time.perf_counter() - started < 60

    message = str(info.value)
    assert "'efficientnet_b3'" in message
    assert "argument weights_path (not given)" in message
    assert f"environment variable {WEIGHTS_ENV} (not set)" in message
    assert f"Keras 'imagenet' weights from {IMAGENET_URL}" in message
    assert offline and offline[0][0] == "storage.googleapis.com"  # tried, blocked locally
    assert not list((tmp_path / "models").glob("*.h5"))
    assert socket.getdefaulttimeout() is None  # the download's timeout was restored


def test_b3_env_path_missing_is_an_error_without_download(
    tmp_path: Path, offline, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "b3.h5"
    monkeypatch.setenv(WEIGHTS_ENV, str(missing))
    with pytest.raises(ModelLoadError) as info:
        load_tensorflow_classifier("efficientnet_b3", cache_dir=tmp_path)
    message = str(info.value)
    assert "'efficientnet_b3'" in message and str(missing) in message and WEIGHTS_ENV in message
    assert offline == []


def test_b3_loads_local_weights_from_argument_or_environment(
    tmp_path: Path, offline, monkeypatch: pytest.MonkeyPatch
) -> None:
    keras.utils.set_random_seed(7)
    reference = keras_apps.build(B3)
    kernel, bias = reference.get_layer("predictions").get_weights()
    bias[123] = 10.0  # a mark that only these weights carry
    reference.get_layer("predictions").set_weights([kernel, bias])
    weights = tmp_path / "b3.weights.h5"
    reference.save_weights(weights)
    batch = photo_batch(300)
    expected = np.asarray(reference.predict_on_batch(batch.astype(np.float32)))

    from_argument = load_tensorflow_classifier("efficientnet_b3", weights_path=str(weights))
    monkeypatch.setenv(WEIGHTS_ENV, str(weights))
    from_env = load_tensorflow_classifier("efficientnet_b3")

    for classifier in (from_argument, from_env):
        assert classifier.spec.input_size == 300
        probs = classifier.predict_proba(batch)
        assert probs.shape == (4, 1000) and probs.dtype == np.float32
        np.testing.assert_allclose(probs, expected, rtol=1e-4, atol=1e-7)
        assert (probs.argmax(axis=1) == 123).all()
    assert offline == []


def test_b3_unusable_weights_file(tmp_path: Path, offline) -> None:
    weights = tmp_path / "b3.h5"
    weights.write_bytes(b"junk")
    with pytest.raises(ModelLoadError, match=r"'efficientnet_b3'.*b3\.h5.*unusable"):
        load_tensorflow_classifier("efficientnet_b3", weights_path=str(weights))
