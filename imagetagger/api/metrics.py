"""The metrics the request core and the request log record, as plain protocols.

The ingress deployment hands in Ray Serve's metric objects (``deployments.metrics``);
tests and in-process use get :class:`NullMetrics`, which records nothing.
"""

from __future__ import annotations

from typing import Protocol


class CounterLike(Protocol):
    def inc(self, value: float = 1.0, tags: dict[str, str] | None = None) -> None: ...


class GaugeLike(Protocol):
    def set(self, value: float, tags: dict[str, str] | None = None) -> None: ...


class CoreMetrics(Protocol):
    """What the core counts: images by outcome, the response cache's hits and size."""

    images: CounterLike
    cache_hits: CounterLike
    cache_misses: CounterLike
    cache_entries: GaugeLike
    cache_bytes: GaugeLike


class HttpMetrics(Protocol):
    """What the request log counts: requests by route and status."""

    requests: CounterLike


class _Nothing:
    def inc(self, value: float = 1.0, tags: dict[str, str] | None = None) -> None:
        pass

    def set(self, value: float, tags: dict[str, str] | None = None) -> None:
        pass


class NullMetrics:
    """Records nothing: the core and the app outside a Serve replica."""

    def __init__(self) -> None:
        self.images = self.cache_hits = self.cache_misses = _Nothing()
        self.cache_entries = self.cache_bytes = _Nothing()
        self.requests = _Nothing()


NULL_METRICS = NullMetrics()


def no_metrics() -> NullMetrics:
    """The one :class:`NullMetrics`, for an app outside a Serve replica (no object per request)."""
    return NULL_METRICS
