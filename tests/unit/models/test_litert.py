"""The ``litert`` runtime: the same model as TensorFlow, converted once, cached safely,
and run without TensorFlow in the process."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import skimage.data

from imagetagger.errors import ModelLoadError
from imagetagger.images import prepare_image
from imagetagger.models import litert
from imagetagger.models.litert import LiteRTClassifier, load_litert_classifier
from imagetagger.models.runtimes import RuntimeOptions, load_model
from imagetagger.models.specs import get_spec
from tests import cache_damage, images
from tests.paths import REPO_ROOT, TEST_DATA

pytestmark = pytest.mark.models  # real weights and conversions: minutes, not seconds
DATA = TEST_DATA
ROOT = REPO_ROOT
SKIMAGE_PHOTOS = {
    "astronaut": skimage.data.astronaut,
    "chelsea": skimage.data.chelsea,
    "coffee": skimage.data.coffee,
    "rocket": skimage.data.rocket,
    "camera": skimage.data.camera,
    "motorcycle_left": lambda: skimage.data.stereo_motorcycle()[0],
}
LITE_FIXTURES = {"efficientnet_lite0": "lite0", "efficientnet_lite2": "lite2"}


def real_photo_batch(size: int) -> np.ndarray:
    """The project's real photos, prepared exactly as the service prepares them."""
    encoded = [(DATA / name).read_bytes() for name in ("chelsea.jpg", "coffee.jpg")]
    encoded += [images.jpeg_bytes(load()) for load in SKIMAGE_PHOTOS.values()]
    return np.stack([prepare_image(data, size=size) for data in encoded])


@pytest.fixture(scope="module", params=sorted(LITE_FIXTURES))
def both_runtimes(request: pytest.FixtureRequest):
    prefix = LITE_FIXTURES[request.param]
    tensorflow = request.getfixturevalue(f"{prefix}_classifier")
    return tensorflow, request.getfixturevalue(f"{prefix}_litert_classifier")


def test_litert_agrees_with_tensorflow_on_real_photos(both_runtimes) -> None:
    tensorflow, lite = both_runtimes
    batch = real_photo_batch(lite.spec.input_size)
    expected = tensorflow.predict_proba(batch)
    got = lite.predict_proba(batch)
    assert got.shape == (len(batch), 1000) and got.dtype == np.float32
    assert np.abs(got - expected).max() <= 1e-5
    for ours, theirs in zip(got, expected, strict=True):
        assert list(np.argsort(-ours)[:5]) == list(np.argsort(-theirs)[:5])


def test_batches_and_single_images_give_the_same_answer(both_runtimes) -> None:
    _, lite = both_runtimes
    batch = real_photo_batch(lite.spec.input_size)
    one_by_one = np.concatenate([lite.predict_proba(image[np.newaxis]) for image in batch])
    np.testing.assert_array_equal(lite.predict_proba(batch), one_by_one)
    assert lite.predict_proba(batch[:0]).shape == (0, 1000)


def test_litert_rejects_wrong_inputs(both_runtimes) -> None:
    _, lite = both_runtimes
    size = lite.spec.input_size
    with pytest.raises(ValueError, match="uint8"):
        lite.predict_proba(np.zeros((1, size, size, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="shape"):
        lite.predict_proba(np.zeros((1, size + 1, size, 3), dtype=np.uint8))


def test_interpreter_pool_serves_threads_in_parallel(both_runtimes) -> None:
    from concurrent.futures import ThreadPoolExecutor

    _, lite = both_runtimes
    batch = real_photo_batch(lite.spec.input_size)
    expected = lite.predict_proba(batch)
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda i: lite.predict_proba(batch[i : i + 1]), range(len(batch))))
    np.testing.assert_array_equal(np.concatenate(results), expected)


# --- the converted-model cache -------------------------------------------------------


def _flatbuffers(directory: Path) -> list[Path]:
    return sorted(directory.glob("efficientnet_lite0-*.tflite"))


@pytest.fixture
def conversions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every conversion (each one runs TensorFlow in a child process)."""
    calls: list[str] = []
    convert = litert._convert_in_child

    def spy(name, *args):
        calls.append(name)
        return convert(name, *args)

    monkeypatch.setattr(litert, "_convert_in_child", spy)
    return calls


@pytest.fixture(scope="module")
def lite0_cache(tmp_path_factory: pytest.TempPathFactory, model_cache_dir: Path) -> Path:
    """A cache with lite0's converted weights and flatbuffer, for the damage tests."""
    directory = tmp_path_factory.mktemp("litert-cache")
    for path in model_cache_dir.glob("efficientnet_lite0-*.weights.h5*"):
        (directory / path.name).write_bytes(path.read_bytes())
    litert.ensure_flatbuffer("efficientnet_lite0", cache_dir=directory)
    return directory


def test_flatbuffer_is_cached_checksummed_and_reused(
    lite0_cache: Path, conversions: list[str]
) -> None:
    (cached,) = _flatbuffers(lite0_cache)
    assert cached.name.endswith("-float32.tflite")  # keyed by precision
    sidecar = cached.with_name(cached.name + ".sha256")
    assert sidecar.read_text().strip() == litert.checksums.file_sha256(cached)
    assert {p.stat().st_mode & 0o777 for p in (cached, sidecar)} == {0o644}
    assert not [p for p in lite0_cache.iterdir() if p.name.startswith(".")]  # no temp files

    mtime = cached.stat().st_mtime_ns
    load_litert_classifier("efficientnet_lite0", cache_dir=lite0_cache)
    assert conversions == [] and cached.stat().st_mtime_ns == mtime


def test_flatbuffer_is_keyed_by_the_weights(lite0_cache: Path, tmp_path: Path) -> None:
    spec = get_spec("efficientnet_lite0")
    (cached,) = _flatbuffers(lite0_cache)
    assert litert.flatbuffer_file(spec, lite0_cache) == cached
    other = tmp_path / "other.pth"
    other.write_bytes(b"different weights")
    assert litert.flatbuffer_file(spec, lite0_cache, weights_path=str(other)) != cached


@pytest.mark.parametrize("damage", cache_damage.DAMAGES)
def test_damaged_flatbuffer_is_rebuilt(
    lite0_cache: Path, conversions: list[str], lite0_classifier, damage, caplog
) -> None:
    (cached,) = _flatbuffers(lite0_cache)
    damage(cached)
    with caplog.at_level(logging.WARNING, logger="imagetagger.models.litert"):
        rebuilt = load_litert_classifier("efficientnet_lite0", cache_dir=lite0_cache)
    assert conversions == ["efficientnet_lite0"]
    assert "Ignoring unusable LiteRT cache" in caplog.text
    litert.checksums.verify(cached)
    batch = real_photo_batch(224)
    assert np.abs(rebuilt.predict_proba(batch) - lite0_classifier.predict_proba(batch)).max() < 1e-5


def test_failed_conversion_names_the_model_and_the_reason(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pth"
    with pytest.raises(ModelLoadError, match="efficientnet_lite0") as info:
        litert.ensure_flatbuffer(
            "efficientnet_lite0", weights_path=str(missing), cache_dir=tmp_path
        )
    assert "missing.pth" in str(info.value)
    assert not list(tmp_path.glob("*.tflite"))


def test_only_builtin_ops_are_converted() -> None:
    from imagetagger.models.litert_convert import convert

    keras = pytest.importorskip("keras")
    import tensorflow as tf

    def invert(x):  # MatrixInverse has no LiteRT builtin: it would need TensorFlow
        return tf.reshape(tf.linalg.inv(tf.reshape(x[..., :1], (-1, 4, 4))), (-1, 4, 4, 1))

    inputs = keras.Input((4, 4, 3))
    model = keras.Model(inputs, keras.layers.Lambda(invert)(inputs))
    with pytest.raises(Exception, match="MatrixInverse"):
        convert(model, 4)


# --- runtimes --------------------------------------------------------------------------


def test_a_litert_process_never_imports_tensorflow(lite0_cache: Path) -> None:
    cache = f"Path({str(lite0_cache)!r})"
    code = (
        "import sys; from pathlib import Path; import numpy as np; "
        "from imagetagger.models.runtimes import RuntimeOptions, load_model; "
        f"c = load_model('efficientnet_lite0', RuntimeOptions(), cache_dir={cache}); "
        "c.predict_proba(np.zeros((1, 224, 224, 3), np.uint8)); "
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_runtime_options_refuse_settings_that_change_the_model() -> None:
    with pytest.raises(ValueError, match="compute_dtype"):
        RuntimeOptions(runtime="litert", compute_dtype="mixed_float16")
    with pytest.raises(ValueError, match="runtime"):
        RuntimeOptions(runtime="onnx")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive"):
        RuntimeOptions(interpreters=0)
    assert RuntimeOptions().runtime == "litert"  # the CPU default


def test_load_model_dispatches_on_the_runtime(lite0_cache: Path) -> None:
    classifier = load_model(
        "efficientnet_lite0", RuntimeOptions(interpreters=3), cache_dir=lite0_cache
    )
    assert isinstance(classifier, LiteRTClassifier) and classifier.pool_size == 3


# --- the solo interpreter ------------------------------------------------------------


@pytest.fixture(scope="module")
def solo_classifier(lite0_cache: Path) -> LiteRTClassifier:
    """lite0 with two single-threaded interpreters and a 2-thread solo one."""
    classifier = load_model(
        "efficientnet_lite0",
        RuntimeOptions(intra_op_threads=1, interpreters=2, solo_threads=2),
        cache_dir=lite0_cache,
    )
    assert isinstance(classifier, LiteRTClassifier)
    return classifier


class InterpreterSpy:
    """Which interpreter (``solo`` or ``pool``) runs each call, and whether ``release``
    was set when it did; the runs stay real. With ``hold_first_solo`` the first solo run
    waits for ``release`` (``solo_started`` says it began), so a test can overlap it."""

    def __init__(
        self,
        classifier: LiteRTClassifier,
        monkeypatch: pytest.MonkeyPatch,
        hold_first_solo: bool = False,
    ) -> None:
        solo = classifier._solo
        assert solo is not None
        run = type(solo).run
        self.runs: list[tuple[str, bool]] = []
        self.solo_started, self.release = threading.Event(), threading.Event()
        if not hold_first_solo:
            self.release.set()

        def spied(interpreter, images: np.ndarray) -> np.ndarray:
            self.runs.append(("solo" if interpreter is solo else "pool", self.release.is_set()))
            if interpreter is solo and not self.solo_started.is_set():
                self.solo_started.set()
                assert self.release.wait(timeout=30)
            return run(interpreter, images)

        monkeypatch.setattr(type(solo), "run", spied)

    @property
    def used(self) -> list[str]:
        return [which for which, _ in self.runs]


def test_a_lone_image_runs_on_the_solo_interpreter_with_the_same_answer(
    solo_classifier: LiteRTClassifier, lite0_litert_classifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = real_photo_batch(solo_classifier.spec.input_size)
    spy = InterpreterSpy(solo_classifier, monkeypatch)
    got = np.concatenate([solo_classifier.predict_proba(image[np.newaxis]) for image in batch])
    assert spy.used == ["solo"] * len(batch)
    # XNNPACK splits the work, not the sums, across threads: the answers are bit-identical.
    np.testing.assert_array_equal(got, lite0_litert_classifier.predict_proba(batch))


def _start_a_lone_call_that_holds_the_solo_interpreter(
    classifier: LiteRTClassifier, spy: InterpreterSpy, image: np.ndarray
) -> tuple[threading.Thread, list[np.ndarray]]:
    answers: list[np.ndarray] = []
    lone = threading.Thread(target=lambda: answers.append(classifier.predict_proba(image)))
    lone.start()
    assert spy.solo_started.wait(timeout=30)
    return lone, answers


def test_an_image_that_overlaps_a_running_one_goes_to_the_pool(
    solo_classifier: LiteRTClassifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = real_photo_batch(solo_classifier.spec.input_size)
    expected = solo_classifier.predict_proba(batch[:1])
    spy = InterpreterSpy(solo_classifier, monkeypatch, hold_first_solo=True)
    lone, first = _start_a_lone_call_that_holds_the_solo_interpreter(
        solo_classifier, spy, batch[:1]
    )
    overlapping = solo_classifier.predict_proba(batch[:1])
    spy.release.set()
    lone.join(timeout=30)
    assert not lone.is_alive()
    assert spy.used == ["solo", "pool"]
    np.testing.assert_array_equal(overlapping, expected)
    np.testing.assert_array_equal(first[0], expected)
    solo_classifier.predict_proba(batch[:1])  # alone again: the solo interpreter
    assert spy.used == ["solo", "pool", "solo"]


def test_a_warm_up_waits_for_the_solo_interpreter_to_be_free(
    solo_classifier: LiteRTClassifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = real_photo_batch(solo_classifier.spec.input_size)
    spy = InterpreterSpy(solo_classifier, monkeypatch, hold_first_solo=True)
    lone, _ = _start_a_lone_call_that_holds_the_solo_interpreter(solo_classifier, spy, batch[:1])
    warm_up = threading.Thread(target=solo_classifier.warmup)
    warm_up.start()
    warm_up.join(timeout=1.0)
    assert warm_up.is_alive()  # waiting for the solo interpreter, not running it
    spy.release.set()
    lone.join(timeout=30)
    warm_up.join(timeout=30)
    assert not lone.is_alive() and not warm_up.is_alive()
    # the lone call's solo run before the release, the warm-up's only after it
    assert [released for which, released in spy.runs if which == "solo"] == [False, True]


def test_solo_threads_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="positive"):
        RuntimeOptions(solo_threads=-1)
