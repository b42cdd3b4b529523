"""Bytes to labels through the library path the service uses: decode, crop, model, filter.

Every Pillow mode and every EXIF orientation of the chelsea photo must still be a cat
in the top 3, for both served Lite sizes, on TensorFlow and on LiteRT (float and int8).
"""

from __future__ import annotations

import pytest

from imagetagger.images import prepare_image
from imagetagger.models.options import Classifier
from imagetagger.predictions import select_predictions
from tests import images

# ImageNet's domestic cats (281-285): a 1-bit dithered chelsea loses her stripes.
pytestmark = pytest.mark.models  # real weights and conversions: minutes, not seconds
ANY_CAT = {"tabby", "tiger_cat", "Persian_cat", "Siamese_cat", "Egyptian_cat"}


@pytest.fixture(params=["lite0", "lite2", "lite2_litert", "lite0_int8", "lite2_int8"])
def classifier(request: pytest.FixtureRequest) -> Classifier:
    return request.getfixturevalue(f"{request.param}_classifier")


def top3(classifier: Classifier, data: bytes) -> set[str]:
    crop = prepare_image(
        data, size=classifier.spec.input_size, crop_padding=classifier.spec.crop_padding
    )
    probabilities = classifier.predict_proba(crop[None])[0]
    return {p["label"] for p in select_predictions(probabilities, top=3)}


def test_every_mode_is_still_a_cat(classifier: Classifier) -> None:
    misses = {
        name: labels
        for name, data in images.photo_mode_variants().items()
        if not (labels := top3(classifier, data)) & ANY_CAT
    }
    assert not misses


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_still_a_cat(classifier: Classifier, orientation: int) -> None:
    data = images.exif_oriented_jpeg(images.photo(), orientation)
    assert top3(classifier, data) & ANY_CAT
