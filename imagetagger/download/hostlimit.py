"""At most N downloads from one host at a time: the Downloader's courtesy to third parties.

Without it, a client could point the service at one host and have every replica open
as many connections to it as the service allows. A download past the cap waits for a
slot (within its own deadline, which the caller enforces) instead of failing early.

Hosts are compared by name, lower-cased, with every port counted together, and an IP
literal in any spelling (``2130706433``, ``0x7f.1``, ``[::ffff:1.2.3.4]``) counts as
its address, so a host cannot be spelled several ways to multiply the cap. A host with
no download in progress holds no memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from imagetagger.download.netguard import ip_literal


@dataclass
class _Slots:
    semaphore: asyncio.Semaphore
    users: int = field(default=0)


class HostLimiter:
    """``async with limiter.slot(host):`` holds one of ``limit`` slots for ``host``."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        self.limit = limit
        self._hosts: dict[str, _Slots] = {}

    def __len__(self) -> int:
        """Hosts with a download in progress or waiting."""
        return len(self._hosts)

    @asynccontextmanager
    async def slot(self, host: str) -> AsyncIterator[None]:
        key = host_key(host)
        slots = self._hosts.get(key)
        if slots is None:
            slots = self._hosts[key] = _Slots(asyncio.Semaphore(self.limit))
        slots.users += 1  # waiters count too: the entry must outlive them
        try:
            async with slots.semaphore:
                yield
        finally:
            slots.users -= 1
            if slots.users == 0:
                del self._hosts[key]


def host_key(host: str) -> str:
    """One name per host: an IP literal's canonical address, else the lower-cased name."""
    name = host.strip("[]").rstrip(".").lower()
    address = ip_literal(name)
    return str(address) if address is not None else name
