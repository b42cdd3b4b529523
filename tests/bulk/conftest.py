"""One local Ray for the bulk tests, stopped when they are done.

Package-scoped, not session-scoped: ``tests/service`` starts its own Ray cluster for
the Serve tests, and two clusters cannot share one driver, so this one ends before
those tests begin (``bulk`` sorts before ``service``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="package")
def local_ray() -> Iterator[None]:
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()
