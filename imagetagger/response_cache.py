"""Answers for repeated images: the model's probabilities, kept by image bytes and model.

Real traffic repeats images (catalogues re-tagged, avatars, shared memes). The key is
the SHA-256 of the image's bytes together with the identity of the model that answered
(:func:`imagetagger.models.runtimes.model_identity`: model, runtime, precision,
weights), so a changed byte, another model or another precision is another key. The
value is the 1000 probabilities, so ``top`` and ``minconf`` still apply per request.
Bounded by bytes, least recently used out first; 0 bytes turns it off.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from imagetagger.settings import DEFAULT_CACHE_BYTES

# Per entry beyond the probabilities: the key's strings and the dict's own slots.
ENTRY_OVERHEAD_BYTES = 200


def image_digest(data: bytes) -> bytes:
    """The cache's key for an image's bytes (SHA-256: no two images share it in practice)."""
    return hashlib.sha256(data).digest()


@dataclass(frozen=True)
class CacheStats:
    hits: int
    misses: int
    entries: int
    bytes: int


class ResponseCache:
    """An LRU map (model identity, image digest) -> probabilities, bounded by bytes."""

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self._entries: OrderedDict[tuple[str, bytes], np.ndarray] = OrderedDict()
        self._bytes = 0
        self.max_bytes = 0
        self.hits = 0
        self.misses = 0
        self.resize(max_bytes)

    @staticmethod
    def _cost(probabilities: np.ndarray) -> int:
        return probabilities.nbytes + ENTRY_OVERHEAD_BYTES

    def resize(self, max_bytes: int) -> None:
        """Change the bound (live, from ``user_config``); evicts down to it at once."""
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self._evict()

    def get(self, model: str, digest: bytes) -> np.ndarray | None:
        """The probabilities ``model`` gave for these bytes, or None (counted as a miss)."""
        if self.max_bytes == 0:
            return None
        found = self._entries.get((model, digest))
        if found is None:
            self.misses += 1
            return None
        self._entries.move_to_end((model, digest))
        self.hits += 1
        return found

    def put(self, model: str, digest: bytes, probabilities: np.ndarray) -> None:
        """Keep ``model``'s answer for these bytes (a read-only copy)."""
        value = np.array(probabilities, dtype=np.float32, copy=True)
        value.setflags(write=False)
        cost = self._cost(value)
        if cost > self.max_bytes:
            return
        key = (model, digest)
        if key in self._entries:
            self._bytes -= self._cost(self._entries.pop(key))
        self._entries[key] = value
        self._bytes += cost
        self._evict()

    def _evict(self) -> None:
        while self._bytes > self.max_bytes and self._entries:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= self._cost(evicted)

    def stats(self) -> CacheStats:
        return CacheStats(self.hits, self.misses, len(self._entries), self._bytes)
