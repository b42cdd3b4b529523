"""Which TCP sockets a tree of processes listens on, read from /proc (Linux; no psutil).

Why: "only the service port is reachable from other hosts" is a claim about every
process Ray and Serve start, and the only way to check it is to look at the sockets
themselves (``tests/service/test_listening_sockets.py``).
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import os
from dataclasses import dataclass
from pathlib import Path

from imagetagger.serving.processes import process_name

TCP_LISTEN = "0A"  # the st column of /proc/net/tcp*: TCP_LISTEN


@dataclass(frozen=True, order=True)
class Listener:
    """One listening TCP socket: where it binds and which process holds it."""

    host: str
    port: int
    pid: int
    process: str

    @property
    def loopback(self) -> bool:
        """Bound to a loopback address only (127.0.0.0/8, ::1, ::ffff:127.x)."""
        address = ipaddress.ip_address(self.host)
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return address.is_loopback

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port} ({self.process}, pid {self.pid})"


def _decode_address(text: str) -> tuple[str, int]:
    """``0100007F:1F90`` (IPv4) or 32 hex digits (IPv6), as the kernel prints them."""
    host_hex, port_hex = text.split(":")
    raw = bytes.fromhex(host_hex)
    # The kernel prints each 32-bit word in host byte order (little-endian here).
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    host = str(ipaddress.ip_address(words))
    return host, int(port_hex, 16)


def listening_inodes(net_dir: Path = Path("/proc/net")) -> dict[int, tuple[str, int]]:
    """Socket inode -> (host, port) of every listening TCP socket in this network namespace."""
    found: dict[int, tuple[str, int]] = {}
    for name in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in (net_dir / name).read_text().splitlines()[1:]:
                fields = line.split()
                if len(fields) > 9 and fields[3] == TCP_LISTEN:
                    found[int(fields[9])] = _decode_address(fields[1])
    return found


def socket_inodes(pid: int) -> set[int]:
    """The inodes of the sockets ``pid`` holds open (its fd links ``socket:[N]``)."""
    inodes: set[int] = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(int(target[8:-1]))
    return inodes


def listeners(pids: list[int] | set[int]) -> list[Listener]:
    """Every listening TCP socket the processes ``pids`` hold, sorted, one per socket.

    A socket shared by several processes (inherited across fork) is listed once, under
    the first holder found.
    """
    listening = listening_inodes()
    found: dict[int, Listener] = {}
    for pid in sorted(pids):
        for inode in socket_inodes(pid) & listening.keys():
            if inode not in found:
                host, port = listening[inode]
                found[inode] = Listener(host, port, pid, process_name(pid) or "?")
    return sorted(found.values())


def own_addresses(proc: Path = Path("/proc/net")) -> list[str]:
    """This host's own addresses other than loopback and link-local (IPv4, then IPv6).

    The addresses another host on the network would connect to: what "reachable from
    other hosts" means for a socket. Read from the kernel's tables (no tools needed).
    """
    found: list[str] = []
    with contextlib.suppress(OSError):
        lines = (proc / "fib_trie").read_text().splitlines()
        for previous, line in itertools.pairwise(lines):
            if line.strip() == "/32 host LOCAL":
                found.append(previous.split("--")[-1].strip())
    with contextlib.suppress(OSError):
        for line in (proc / "if_inet6").read_text().splitlines():
            raw = bytes.fromhex(line.split()[0])
            found.append(str(ipaddress.IPv6Address(raw)))
    unique = []
    for text in found:
        with contextlib.suppress(ValueError):
            address = ipaddress.ip_address(text)
            if not (address.is_loopback or address.is_link_local) and text not in unique:
                unique.append(text)
    return unique


def wildcard_or(host: str) -> set[str]:
    """The bind addresses a connection to ``host`` may be accepted on."""
    if ":" in host:
        return {host, "::"}
    return {host, "0.0.0.0", "::", f"::ffff:{host}"}


def accepting_listeners(host: str, port: int) -> set[int]:
    """Inodes of the listening sockets that a connection to ``host:port`` could reach."""
    return {
        inode
        for inode, (bound, bound_port) in listening_inodes().items()
        if bound_port == port and bound in wildcard_or(host)
    }
