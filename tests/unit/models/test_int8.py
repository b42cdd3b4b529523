"""int8 LiteRT models: faster, and close enough to float to offer as an opt-in.

Agreement is measured on the project's real photos (tests/data and scikit-image's
samples) and on crops and rotations of them, which are inputs the calibration never
saw (the calibration set holds some of the same photos, whole and mirrored). On views
with a clear subject int8 gives the float top-1; on near-ties (the float model's own
top-1 below 0.4) it may pick the runner-up, which stays in its top 5.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage.data

from imagetagger.images import prepare_image
from imagetagger.models import calibration, litert
from imagetagger.models.specs import get_spec
from tests import images
from tests.paths import TEST_DATA

pytestmark = pytest.mark.models  # real weights and conversions: minutes, not seconds
DATA = TEST_DATA
PHOTOS = {
    "chelsea.jpg": lambda: (DATA / "chelsea.jpg").read_bytes(),
    "coffee.jpg": lambda: (DATA / "coffee.jpg").read_bytes(),
    "astronaut": lambda: images.jpeg_bytes(skimage.data.astronaut()),
    "rocket": lambda: images.jpeg_bytes(skimage.data.rocket()),
    "camera": lambda: images.jpeg_bytes(skimage.data.camera()),
    "motorcycle_left": lambda: images.jpeg_bytes(skimage.data.stereo_motorcycle()[0]),
    "motorcycle_right": lambda: images.jpeg_bytes(skimage.data.stereo_motorcycle()[1]),
    "hubble_deep_field": lambda: images.jpeg_bytes(skimage.data.hubble_deep_field()),
    "immunohistochemistry": lambda: images.jpeg_bytes(skimage.data.immunohistochemistry()),
}


# A float top-1 probability from which the photo has a clear subject (the everyday
# photos int8 was first measured on). Below it, crops of textures or of the sky.
CLEAR_SUBJECT = 0.4


def _views(array: np.ndarray) -> list[np.ndarray]:
    """The photo, its four quadrant-ish corner crops and a quarter turn."""
    height, width = array.shape[:2]
    h, w = (2 * height) // 3, (2 * width) // 3
    corners = [array[:h, :w], array[:h, -w:], array[-h:, :w], array[-h:, -w:]]
    return [array, *corners, np.rot90(array)]


def evaluation_batch(size: int) -> np.ndarray:
    import io

    from PIL import Image

    crops = []
    for load in PHOTOS.values():
        photo = np.asarray(Image.open(io.BytesIO(load())).convert("RGB"))
        for view in _views(photo):
            crops.append(prepare_image(images.jpeg_bytes(np.ascontiguousarray(view)), size=size))
    return np.stack(crops)


@pytest.fixture(scope="module", params=["lite0", "lite2"])
def float_and_int8(request: pytest.FixtureRequest):
    return (
        request.getfixturevalue(f"{request.param}_litert_classifier"),
        request.getfixturevalue(f"{request.param}_int8_classifier"),
    )


def test_int8_agrees_with_float_on_real_photos(float_and_int8) -> None:
    float_model, int8_model = float_and_int8
    batch = evaluation_batch(float_model.spec.input_size)
    expected = float_model.predict_proba(batch)
    got = int8_model.predict_proba(batch)
    assert len(batch) == 6 * len(PHOTOS)
    same_top1 = expected.argmax(1) == got.argmax(1)
    top5 = np.argsort(-got, axis=1)[:, :5]
    in_top5 = [label in row for label, row in zip(expected.argmax(1), top5, strict=True)]
    clear = expected.max(1) >= CLEAR_SUBJECT
    print(
        f"{float_model.spec.name}: top-1 agreement {same_top1.mean():.3f} on {len(batch)}, "
        f"{same_top1[clear].mean():.3f} on the {clear.sum()} with a clear subject; "
        f"max |p diff| {np.abs(got - expected).max():.3f}"
    )
    assert all(in_top5)  # the float answer is always among int8's top 5
    assert clear.sum() >= len(batch) // 3
    assert same_top1[clear].mean() >= 0.97
    # Where they differ, the float model itself hesitates: a near-tie flipped by noise.
    assert (expected.max(1)[~same_top1] < CLEAR_SUBJECT).all()


def test_int8_outputs_are_probabilities(float_and_int8) -> None:
    _, int8_model = float_and_int8
    probabilities = int8_model.predict_proba(evaluation_batch(int8_model.spec.input_size)[:6])
    assert probabilities.dtype == np.float32 and probabilities.shape == (6, 1000)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert (probabilities >= 0).all()


def test_cache_is_keyed_by_precision(lite0_litert_classifier, lite0_int8_classifier) -> None:
    float_path, int8_path = lite0_litert_classifier.model_path, lite0_int8_classifier.model_path
    assert float_path != int8_path
    assert float_path.name.endswith("-float32.tflite") and int8_path.name.endswith("-int8.tflite")
    assert int8_path.stat().st_size < float_path.stat().st_size / 2  # int8 weights
    batch = evaluation_batch(224)[:4]
    # Loading one precision never serves the other: each answers as it did before.
    again = litert.load_litert_classifier(
        "efficientnet_lite0", cache_dir=float_path.parent, precision="float32"
    )
    np.testing.assert_array_equal(
        again.predict_proba(batch), lite0_litert_classifier.predict_proba(batch)
    )
    assert not np.array_equal(
        again.predict_proba(batch), lite0_int8_classifier.predict_proba(batch)
    )


def test_int8_cache_follows_the_calibration_set(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    spec = get_spec("efficientnet_lite0")
    before = litert.flatbuffer_file(spec, tmp_path, precision="int8")
    (tmp_path / "calibration").mkdir()
    for path in calibration.calibration_files()[:3]:
        (tmp_path / "calibration" / path.name).write_bytes(path.read_bytes())
    monkeypatch.setattr(calibration, "calibration_dir", lambda: tmp_path / "calibration")
    assert litert.flatbuffer_file(spec, tmp_path, precision="int8") != before
    assert litert.flatbuffer_file(spec, tmp_path) == litert.flatbuffer_file(spec, tmp_path)


def test_calibration_set_is_shipped_documented_and_reproducible(tmp_path: Path) -> None:
    files = calibration.calibration_files()
    assert [p.stem for p in files] == sorted(calibration.SOURCES)
    readme = (calibration.calibration_dir() / "README.md").read_text()
    for name, (_, source) in calibration.SOURCES.items():
        assert name in readme and source in readme
    rebuilt = calibration.regenerate(tmp_path)
    for shipped, fresh in zip(files, rebuilt, strict=True):
        a = prepare_image(shipped.read_bytes(), size=224).astype(int)
        b = prepare_image(fresh.read_bytes(), size=224).astype(int)
        assert np.abs(a - b).mean() < 1.0, shipped.name
    inputs = calibration.calibration_inputs(224)
    assert len(inputs) == 2 * len(files)
    np.testing.assert_array_equal(inputs[1], inputs[0][:, ::-1])
