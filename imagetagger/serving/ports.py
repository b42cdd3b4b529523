"""Finding TCP ports, with the two policies this project needs, in one place.

- :func:`kernel_free_port`: the kernel's choice (bind to port 0): for a server this
  process starts at once (a test's image server, a benchmark's peer).
- :func:`free_ports` / :func:`free_port_block`: from :data:`PRIVATE_PORTS`, below the
  kernel's ephemeral range, for ports another process binds later (HAProxy, Serve's
  direct-ingress servers): Ray's own processes, which bind port 0, cannot take them
  in between.
"""

from __future__ import annotations

import random
import socket

# Above Ray's worker ports (10002-19999), below Serve's replica ports (30000 and up) and
# the kernel's ephemeral range (32768 and up).
PRIVATE_PORTS = range(20000, 30000)


def kernel_free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now on ``host`` (bound to 0, then released)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def port_or_free(preferred: int | None) -> int:
    """``preferred`` when nothing listens on it, else (or for None) the kernel's choice."""
    if preferred is not None and port_is_free(preferred):
        return preferred
    return kernel_free_port()


def port_is_free(port: int) -> bool:
    """Nothing listens on ``port``, on any interface or on loopback alone."""
    for host in ("0.0.0.0", "127.0.0.1"):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((host, port))
            except OSError:
                return False
    return True


def free_port_block(size: int, taken: set[int]) -> range:
    """``size`` consecutive ports of :data:`PRIVATE_PORTS`, free now and not ``taken``
    (which then holds them too)."""
    for _ in range(1000):
        start = random.randrange(PRIVATE_PORTS.start, PRIVATE_PORTS.stop - size)
        block = range(start, start + size)
        if taken.isdisjoint(block) and all(port_is_free(port) for port in block):
            taken.update(block)
            return block
    raise OSError(f"no {size} consecutive free ports in {PRIVATE_PORTS}")


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports of :data:`PRIVATE_PORTS`, free on every interface now."""
    taken: set[int] = set()
    return [free_port_block(1, taken)[0] for _ in range(count)]
