"""The response cache: answers only for the same bytes and the same model, bounded, LRU."""

from __future__ import annotations

import numpy as np
import pytest

from imagetagger.models.runtimes import RuntimeOptions, model_identity
from imagetagger.models.specs import get_spec
from imagetagger.response_cache import ENTRY_OVERHEAD_BYTES, ResponseCache, image_digest

LITE2 = "efficientnet_lite2/litert/float32/weights-abc"


def probabilities(seed: int) -> np.ndarray:
    values = np.random.default_rng(seed).random(1000).astype(np.float32)
    return values / values.sum()


ENTRY_BYTES = probabilities(0).nbytes + ENTRY_OVERHEAD_BYTES


def test_same_bytes_same_model_hits_with_the_stored_answer() -> None:
    cache = ResponseCache(10 * ENTRY_BYTES)
    digest = image_digest(b"\xff\xd8 some jpeg")
    answer = probabilities(1)
    assert cache.get(LITE2, digest) is None
    cache.put(LITE2, digest, answer)
    hit = cache.get(LITE2, digest)
    assert hit is not None
    assert hit.tobytes() == answer.tobytes()
    assert (cache.stats().hits, cache.stats().misses, cache.stats().entries) == (1, 1, 1)


def test_one_changed_byte_is_a_miss() -> None:
    cache = ResponseCache(10 * ENTRY_BYTES)
    data = bytearray(b"\xff\xd8" + bytes(range(256)) * 40)
    cache.put(LITE2, image_digest(bytes(data)), probabilities(1))
    data[1000] ^= 0x01
    assert cache.get(LITE2, image_digest(bytes(data))) is None


@pytest.mark.parametrize(
    "other",
    [
        "efficientnet_lite0/litert/float32/weights-abc",  # another model
        "efficientnet_lite2/litert/int8/weights-abc",  # another precision
        "efficientnet_lite2/tensorflow/float32/weights-abc",  # another runtime
        "efficientnet_lite2/litert/float32/weights-def",  # other weights
    ],
)
def test_another_model_never_gets_the_answer(other: str) -> None:
    cache = ResponseCache(10 * ENTRY_BYTES)
    digest = image_digest(b"the same bytes")
    cache.put(LITE2, digest, probabilities(1))
    assert cache.get(other, digest) is None
    cache.put(other, digest, probabilities(2))
    assert cache.get(LITE2, digest).tobytes() == probabilities(1).tobytes()
    assert cache.get(other, digest).tobytes() == probabilities(2).tobytes()


def test_bounded_by_bytes_least_recently_used_out_first() -> None:
    cache = ResponseCache(3 * ENTRY_BYTES)
    digests = [image_digest(bytes([i])) for i in range(4)]
    for i in range(3):
        cache.put(LITE2, digests[i], probabilities(i))
    assert cache.get(LITE2, digests[0]) is not None  # 0 is now the most recent
    cache.put(LITE2, digests[3], probabilities(3))
    assert cache.get(LITE2, digests[1]) is None  # the least recently used went out
    assert all(cache.get(LITE2, digests[i]) is not None for i in (0, 2, 3))
    assert cache.stats().entries == 3
    assert cache.stats().bytes == 3 * ENTRY_BYTES <= cache.max_bytes


def test_zero_bytes_is_off_and_resize_evicts_at_once() -> None:
    cache = ResponseCache(0)
    cache.put(LITE2, b"d", probabilities(1))
    assert cache.get(LITE2, b"d") is None
    assert cache.stats().entries == 0
    cache.resize(2 * ENTRY_BYTES)
    cache.put(LITE2, b"a", probabilities(1))
    cache.put(LITE2, b"b", probabilities(2))
    cache.resize(ENTRY_BYTES)
    assert cache.stats().entries == 1
    assert cache.get(LITE2, b"b") is not None
    with pytest.raises(ValueError):
        cache.resize(-1)


def test_stored_answers_are_copies_and_read_only() -> None:
    cache = ResponseCache(2 * ENTRY_BYTES)
    answer = probabilities(1)
    cache.put(LITE2, b"d", answer)
    answer[:] = 0  # the caller's array changes later
    stored = cache.get(LITE2, b"d")
    assert stored.sum() == pytest.approx(1.0, rel=1e-5)
    with pytest.raises(ValueError):
        stored[0] = 1.0


class _Loaded:
    def __init__(self, name: str, model_path: str | None = None) -> None:
        self.spec = get_spec(name)
        if model_path is not None:
            self.model_path = model_path


def test_model_identity_names_everything_that_changes_the_answer() -> None:
    litert = RuntimeOptions(runtime="litert", precision="float32")
    int8 = RuntimeOptions(runtime="litert", precision="int8")
    tf = RuntimeOptions(runtime="tensorflow")
    lite2_f32 = _Loaded("efficientnet_lite2", "/c/efficientnet_lite2-abc-v1-float32.tflite")
    lite2_i8 = _Loaded("efficientnet_lite2", "/c/efficientnet_lite2-abc-x-v1-int8.tflite")
    identities = {
        model_identity(lite2_f32, litert, "abc"),
        model_identity(lite2_i8, int8, "abc"),
        model_identity(_Loaded("efficientnet_lite2"), tf, "abc"),
        model_identity(_Loaded("efficientnet_lite0"), tf, "abc"),
        model_identity(_Loaded("efficientnet_lite2"), tf, "def"),
    }
    assert len(identities) == 5
    assert model_identity(lite2_f32, litert, "abc") == (
        "efficientnet_lite2/litert/float32/weights-abc/efficientnet_lite2-abc-v1-float32.tflite"
    )
