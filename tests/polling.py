"""The one way tests wait for something: poll until it holds, or fail saying what did not.

A poll that returns its last value on timeout leaves the caller to assert it, and a
caller that forgets passes whatever happened; :func:`wait_until` fails instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T], *, timeout_s: float, what: str, interval_s: float = 0.5
) -> T:
    """The first truthy value of ``condition()``; AssertionError (naming ``what`` and the
    last value seen) when none came within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s:g} s (last: {value!r})")
        time.sleep(interval_s)


def wait_until_steady(
    read: Callable[[], float], *, period_s: float, timeout_s: float, what: str
) -> float:
    """``read()`` once it gives the same value twice ``period_s`` apart (e.g. a metric
    whose earlier increments have all been reported, with ``period_s`` above the
    reporting interval)."""
    previous = read()

    def steady() -> tuple[float] | None:
        nonlocal previous
        current = read()
        if current == previous:
            return (current,)
        previous = current
        return None

    return wait_until(steady, timeout_s=timeout_s, what=what, interval_s=period_s)[0]
