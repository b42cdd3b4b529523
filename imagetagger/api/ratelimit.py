"""Per-client token buckets, in one process: an ingress replica's rate limit.

Each client has a bucket of ``burst`` tokens that refills at ``rate_per_s``; a request
takes one token, and a client with none left is told how long until it has one. The
limit is per process (per ingress replica): with N replicas a client may get up to N
times the rate, which the operator sizes for.

Memory is bounded whatever the number of clients: a bucket idle long enough to be full
again is the same as no bucket and is dropped, and beyond ``max_clients`` the least
recently seen bucket is dropped too (that client starts again with a full bucket, a
lenience only a flood of distinct clients can cause). Used from one event loop, so
there is no lock.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_MAX_CLIENTS = 10_000


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """``acquire(client)`` is 0.0 when the request may go ahead, else seconds to wait."""

    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        *,
        max_clients: int = DEFAULT_MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not rate_per_s > 0:
            raise ValueError(f"rate_per_s must be > 0, got {rate_per_s}")
        if burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst}")
        if max_clients < 1:
            raise ValueError(f"max_clients must be >= 1, got {max_clients}")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._max_clients = max_clients
        self._clock = clock
        self._full_after_s = burst / rate_per_s  # an empty bucket is full again after this
        # Least recently seen first: each acquire moves its client to the end.
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        """Buckets held now (clients seen recently enough to matter)."""
        return len(self._buckets)

    def acquire(self, client: str) -> float:
        """Take a token for ``client``; when there is none, take nothing and say how long."""
        now = self._clock()
        self._drop_full(now)
        bucket = self._buckets.pop(client, None)
        if bucket is None:
            tokens = float(self.burst)
        else:
            tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate_per_s)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate_per_s
        self._buckets[client] = _Bucket(tokens=tokens, updated=now)
        while len(self._buckets) > self._max_clients:
            self._buckets.popitem(last=False)
        return wait

    def _drop_full(self, now: float) -> None:
        while self._buckets:
            client, bucket = next(iter(self._buckets.items()))
            if now - bucket.updated < self._full_after_s:
                return
            del self._buckets[client]
