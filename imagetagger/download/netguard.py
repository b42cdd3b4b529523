"""Which addresses the service may connect to, enforced where the connection is made.

A client-supplied URL must not make the service talk to its own network (loopback,
cloud metadata at 169.254.169.254, cluster-internal services). Checking the URL's
hostname up front is not enough: DNS can answer differently when aiohttp resolves it
again (rebinding), numeric hosts such as ``2130706433`` or ``0x7f000001`` are loopback
in disguise, and every redirect is a new destination. So the check sits in the
connector, on the addresses that are about to be connected to:

1. ``GuardedConnector._resolve_host`` filters every resolved address, IP-literal hosts
   included (aiohttp does not send those to the resolver), and raises ``ForbiddenURL``
   when none is left. This is a private aiohttp method, hence the narrow aiohttp pin
   in ``pyproject.toml``; the tests fail loudly if aiohttp stops calling it.
2. The connector's ``socket_factory`` (public aiohttp API) checks the socket address
   once more before the socket exists, so even if step 1 were bypassed not a single
   byte reaches a forbidden address.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import re
import socket
from collections.abc import Iterable
from typing import Any

import aiohttp
from aiohappyeyeballs import AddrInfoType
from aiohttp.abc import ResolveResult

from imagetagger.errors import ForbiddenURL

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

logger = logging.getLogger(__name__)

# RFC 6052 well-known NAT64 prefix: the last 32 bits are the IPv4 destination.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# A host made only of these characters may be a legacy numeric IPv4 form that the
# C library turns into an address (``127.1``, ``0177.0.0.1``, ``0x7f000001``).
_NUMERIC_HOST = re.compile(r"[0-9a-fA-FxX.]+")


def parse_ip(value: str | IPAddress) -> IPAddress:
    """Parse an address, unwrapping IPv4-mapped IPv6: ``::ffff:a.b.c.d`` *is* ``a.b.c.d``."""
    address = ipaddress.ip_address(value) if isinstance(value, str) else value
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _is_public(address: IPAddress) -> bool:
    """True for globally routable unicast addresses.

    ``is_global`` already excludes private, loopback, link-local, CGNAT (100.64.0.0/10),
    "this network" and broadcast, but calls multicast (224.0.0.0/4, ff0e::/16), IPv6
    site-local (fec0::/10) and, on older Pythons, some reserved ranges global.
    """
    return (
        address.is_global
        and not address.is_multicast
        and not address.is_reserved
        and not address.is_unspecified
        and not address.is_loopback
        and not address.is_link_local
        and not (isinstance(address, ipaddress.IPv6Address) and address.is_site_local)
    )


class AddressPolicy:
    """Public addresses are allowed; everything else only inside ``allowed_networks``.

    ``allowed_networks`` are CIDR strings (``"10.1.0.0/16"``, ``"127.0.0.2"``); an
    invalid one raises ``ValueError`` here, at configuration time, never per request.
    Host bits are ignored (``10.1.2.3/16`` means ``10.1.0.0/16``), as in the settings.
    """

    def __init__(self, allowed_networks: Iterable[str] = ()) -> None:
        networks: list[IPNetwork] = []
        for cidr in allowed_networks:
            if not isinstance(cidr, str):
                raise ValueError(f"allowed network must be a CIDR string, got {cidr!r}")
            try:
                networks.append(ipaddress.ip_network(cidr.strip(), strict=False))
            except ValueError as exc:
                raise ValueError(f"invalid allowed network {cidr!r}: {exc}") from exc
        self.allowed_networks: tuple[IPNetwork, ...] = tuple(networks)

    def __repr__(self) -> str:
        return f"AddressPolicy({[str(n) for n in self.allowed_networks]!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AddressPolicy):
            return NotImplemented
        return self.allowed_networks == other.allowed_networks

    def __hash__(self) -> int:
        return hash(self.allowed_networks)

    def _exempt(self, address: IPAddress) -> bool:
        return any(address in network for network in self.allowed_networks)

    def is_allowed(self, ip: str | IPAddress) -> bool:
        """May the service connect to ``ip``? Unparseable input is refused, never guessed."""
        try:
            address = parse_ip(ip)
        except ValueError:
            return False
        if self._exempt(address):
            return True
        if isinstance(address, ipaddress.IPv6Address):
            if address in _NAT64:  # the gateway forwards to the embedded IPv4 address
                embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
                return self._exempt(embedded) or _is_public(embedded)
            if address.sixtofour is not None and not (
                self._exempt(address.sixtofour) or _is_public(address.sixtofour)
            ):
                return False
        return _is_public(address)


def _ip_literal(host: str) -> IPAddress | None:
    """The address an IP-literal host denotes (legacy numeric forms included), else None.

    Legacy IPv4 forms are decoded with ``inet_aton``, the same parser ``getaddrinfo``
    uses, so the address checked is the one the system would connect to.
    """
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _NUMERIC_HOST.fullmatch(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def ip_literal(host: str) -> IPAddress | None:
    """The address an IP-literal host denotes, IPv4-mapped IPv6 unwrapped; else None."""
    address = _ip_literal(host)
    return None if address is None else parse_ip(address)


class ForbiddenAddressError(OSError):
    """Raised by the socket factory: a connection to a forbidden address was attempted."""

    def __init__(self, address: str) -> None:
        super().__init__(errno.EACCES, f"connection to {address} is not allowed")


def caused_by_forbidden_address(exc: BaseException) -> bool:
    """True if ``exc`` (an aiohttp error, typically) stems from the socket-level guard."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ForbiddenAddressError | ForbiddenURL):
            return True
        seen.add(id(current))
        os_error = getattr(current, "os_error", None)  # aiohttp.ClientConnectorError
        if isinstance(os_error, BaseException) and os_error is not current:
            current = os_error
        else:
            current = current.__cause__ or current.__context__
    return False


class GuardedConnector(aiohttp.TCPConnector):
    """A ``TCPConnector`` that connects only to addresses its ``AddressPolicy`` allows."""

    def __init__(self, policy: AddressPolicy, **kwargs: Any) -> None:
        if "socket_factory" in kwargs:
            raise TypeError("GuardedConnector installs its own socket_factory")
        super().__init__(socket_factory=self._open_socket, **kwargs)
        self.policy = policy

    async def _resolve_host(self, host: str, port: int, traces: Any = None) -> list[ResolveResult]:
        """Resolve ``host`` as aiohttp would, then keep only the allowed addresses."""
        literal = _ip_literal(host)
        if literal is not None:
            # aiohttp skips the resolver for IP literals, so check them here; connect to
            # the canonical form, which is what the system would have made of the host.
            if not self.policy.is_allowed(literal):
                logger.info("refused %s: IP literal %s is not allowed", host, literal)
                raise ForbiddenURL()
            family = socket.AF_INET6 if literal.version == 6 else socket.AF_INET
            return [
                ResolveResult(
                    hostname=host, host=str(literal), port=port, family=family, proto=0, flags=0
                )
            ]
        resolved = await super()._resolve_host(host, port, traces=traces)
        allowed = [entry for entry in resolved if self.policy.is_allowed(entry["host"])]
        if not allowed:
            logger.info(
                "refused %s: resolves only to forbidden addresses %s",
                host,
                [entry["host"] for entry in resolved],
            )
            raise ForbiddenURL()
        return allowed

    def _open_socket(self, addr_info: AddrInfoType) -> socket.socket:
        """Last line of defence: no socket, so no byte, for a forbidden address."""
        family, type_, proto, _, sockaddr = addr_info
        address = str(sockaddr[0])
        if not self.policy.is_allowed(address):
            logger.warning("socket guard refused %s; the resolver filter was bypassed", address)
            raise ForbiddenAddressError(address)
        return socket.socket(family=family, type=type_, proto=proto)
