"""Token buckets per client, on an injected clock."""

from __future__ import annotations

import pytest

from imagetagger.api.ratelimit import RateLimiter
from imagetagger.errors import RateLimited


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_burst_then_refused_with_the_wait(clock: Clock) -> None:
    limiter = RateLimiter(2.0, 3, clock=clock)
    assert [limiter.acquire("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("a") == pytest.approx(0.5)  # one token at 2/s
    clock.now += 0.25
    assert limiter.acquire("a") == pytest.approx(0.25)  # a refusal takes nothing
    clock.now += 0.25
    assert limiter.acquire("a") == 0.0
    assert limiter.acquire("a") == pytest.approx(0.5)


def test_clients_have_their_own_buckets(clock: Clock) -> None:
    limiter = RateLimiter(1.0, 2, clock=clock)
    assert limiter.acquire("a") == limiter.acquire("a") == 0.0
    assert limiter.acquire("a") > 0
    assert limiter.acquire("b") == 0.0


def test_steady_rate_is_allowed_and_refill_stops_at_burst(clock: Clock) -> None:
    limiter = RateLimiter(10.0, 5, clock=clock)
    for _ in range(100):  # exactly the rate, forever
        assert limiter.acquire("a") == 0.0
        clock.now += 0.1
    clock.now += 3600  # a long pause refills to the burst, not beyond
    assert [limiter.acquire("a") for _ in range(6)][-2:] == [0.0, pytest.approx(0.1)]


def test_idle_full_buckets_are_dropped(clock: Clock) -> None:
    limiter = RateLimiter(1.0, 4, clock=clock)
    for client in ("a", "b", "c"):
        limiter.acquire(client)
        clock.now += 1.0
    assert len(limiter) == 3
    clock.now += 1.5  # "a" was last seen 4.5 s ago: full again; "b" 3.5 s: not yet
    limiter.acquire("d")
    assert len(limiter) == 3  # a dropped, b c d kept


def test_memory_is_bounded_by_max_clients(clock: Clock) -> None:
    limiter = RateLimiter(1.0, 1, max_clients=100, clock=clock)
    for number in range(10_000):
        limiter.acquire(f"client-{number}")
    assert len(limiter) == 100
    assert limiter.acquire("client-9999") > 0  # the most recent ones are kept


@pytest.mark.parametrize(
    "kwargs", [{"rate_per_s": 0.0}, {"rate_per_s": -1.0}, {"burst": 0}, {"max_clients": 0}]
)
def test_invalid_settings_raise(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        RateLimiter(**{"rate_per_s": 1.0, "burst": 1, **kwargs})


def test_retry_after_is_whole_seconds_rounded_up() -> None:
    assert RateLimited(retry_after_s=0.01).headers == {"Retry-After": "1"}
    assert RateLimited(retry_after_s=1.0).headers == {"Retry-After": "1"}
    assert RateLimited(retry_after_s=2.2).headers == {"Retry-After": "3"}
    error = RateLimited(retry_after_s=2.2)
    assert error.to_dict() == {"type": "RateLimited", "detail": "Too many requests; retry later."}
    assert error.status_code == 429
