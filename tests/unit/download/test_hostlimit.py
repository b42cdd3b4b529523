"""Per-host download slots: the cap, waiting for a turn, one name per host, no leftovers."""

from __future__ import annotations

import asyncio

import pytest

from imagetagger.download.hostlimit import HostLimiter, host_key


def test_at_most_limit_per_host_and_the_rest_wait() -> None:
    async def run() -> tuple[int, int, int]:
        limiter = HostLimiter(2)
        running = peak = done = 0

        async def download(host: str) -> None:
            nonlocal running, peak, done
            async with limiter.slot(host):
                running += 1
                peak = max(peak, running)
                await asyncio.sleep(0.01)
                running -= 1
                done += 1

        await asyncio.gather(*(download("img.example.org") for _ in range(20)))
        return peak, done, len(limiter)

    assert asyncio.run(run()) == (2, 20, 0)


def test_other_hosts_are_not_held_up() -> None:
    async def run() -> bool:
        limiter = HostLimiter(1)
        release = asyncio.Event()

        async def hold() -> None:
            async with limiter.slot("busy.example.org"):
                await release.wait()

        holder = asyncio.create_task(hold())
        await asyncio.sleep(0)
        async with asyncio.timeout(1):
            async with limiter.slot("other.example.org"):
                pass
        with pytest.raises(TimeoutError):  # the busy host's next download waits
            async with asyncio.timeout(0.05):
                async with limiter.slot("BUSY.example.org."):
                    pass
        release.set()
        await holder
        return len(limiter) == 0

    assert asyncio.run(run())


@pytest.mark.parametrize(
    ("spelling", "key"),
    [
        ("Img.Example.ORG", "img.example.org"),
        ("img.example.org.", "img.example.org"),
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("[::ffff:127.0.0.1]", "127.0.0.1"),
        ("::FFFF:7f00:1", "127.0.0.1"),
        ("[2001:DB8::1]", "2001:db8::1"),
    ],
)
def test_host_key_canonicalises_every_spelling(spelling: str, key: str) -> None:
    assert host_key(spelling) == key


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError):
        HostLimiter(0)
