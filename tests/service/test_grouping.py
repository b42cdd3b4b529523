"""A slow origin holds up no other request, however the ingress shares its calls.

The ingress groups concurrent requests' model calls, never their downloads: a slow
origin (or one trickling its bytes on purpose) must delay only its own request, even
when there are more of them than the ingress has group calls in flight.
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from imagetagger.api.core import GROUPS_IN_FLIGHT
from tests import servers
from tests.photos import CHELSEA
from tests.service.helpers import Service

SLOW_S = 4.0


def test_a_slow_origin_does_not_hold_up_the_requests_grouped_with_it(service: Service) -> None:
    slow = f"/slow-{uuid.uuid4().hex}.jpg"
    service.images.add_route(slow, servers.delayed(servers.respond(CHELSEA, "image/jpeg"), SLOW_S))
    fast_url = service.image_url("coffee.jpg")

    def timed(url: str) -> tuple[int, float, str]:
        started = time.monotonic()
        response = service.predict(url)
        label = response.json()["predictions"][0]["label"] if response.ok else ""
        return response.status_code, time.monotonic() - started, label

    slow_url = service.image_url(slow.lstrip("/"))
    with ThreadPoolExecutor(max_workers=2 * GROUPS_IN_FLIGHT + 12) as pool:
        # As many slow downloads as the ingress has group calls in flight (and fewer than
        # the Downloader's connections per host): were downloads grouped, every later
        # request would queue behind them for SLOW_S.
        slow_answers = [pool.submit(timed, slow_url) for _ in range(GROUPS_IN_FLIGHT)]
        time.sleep(0.1)
        fast_answers = [pool.submit(timed, fast_url) for _ in range(10)]
        fast = [answer.result() for answer in fast_answers]
        slow_results = [answer.result() for answer in slow_answers]

    for status, slow_took, slow_label in slow_results:
        assert status == 200 and slow_label in {"tabby", "tiger_cat", "Egyptian_cat"}
        assert slow_took >= SLOW_S
    assert [code for code, _, _ in fast] == [200] * 10
    assert {label for _, _, label in fast} == {"espresso"}
    # No fast one waited for the slow origin.
    assert max(took for _, took, _ in fast) < SLOW_S - 1.0, fast
