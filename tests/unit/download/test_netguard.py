"""AddressPolicy: which addresses may be connected to. Pure predicates; nothing is contacted."""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import aiohttp
import pytest

from imagetagger.download.netguard import (
    AddressPolicy,
    ForbiddenAddressError,
    GuardedConnector,
    caused_by_forbidden_address,
)
from imagetagger.errors import ForbiddenURL
from tests import servers

FORBIDDEN = [
    # IPv4 loopback, private, link-local (cloud metadata), CGNAT
    "127.0.0.1",
    "127.255.255.254",
    "10.0.0.1",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "169.254.169.254",
    "169.254.0.1",
    "100.64.0.1",
    "100.127.255.255",
    # multicast, reserved, unspecified, broadcast, "this network", documentation, benchmarking
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "0.0.0.0",
    "0.1.2.3",
    "255.255.255.255",
    "192.0.2.1",
    "198.18.0.1",
    # IPv6 loopback, unspecified, unique local, link-local, site-local, multicast, documentation
    "::1",
    "::",
    "fc00::1",
    "fd12:3456::1",
    "fe80::1",
    "fe80::1%1",
    "fec0::1",
    "ff02::1",
    "ff0e::1",
    "2001:db8::1",
    # IPv4 embedded in IPv6: mapped, compatible, NAT64, 6to4, Teredo
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "::127.0.0.1",
    "64:ff9b::127.0.0.1",
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "64:ff9b:1::1",  # local-use NAT64 prefix
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2002:a00:1::1",  # 6to4 of 10.0.0.1
    "2001::1",  # Teredo
]

PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "100.63.255.255",  # just below CGNAT
    "100.128.0.0",  # just above CGNAT
    "172.32.0.1",  # just above 172.16.0.0/12
    "2606:4700:4700::1111",
    "2a00:1450:4001::200e",
    "::ffff:8.8.8.8",  # mapped public IPv4 is the public IPv4
    "64:ff9b::8.8.8.8",  # NAT64 of a public IPv4
]


@pytest.mark.parametrize("address", FORBIDDEN)
def test_forbidden_classes_are_refused(address: str) -> None:
    assert AddressPolicy([]).is_allowed(address) is False


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_allowed(address: str) -> None:
    assert AddressPolicy([]).is_allowed(address) is True


def test_accepts_ipaddress_objects() -> None:
    policy = AddressPolicy([])
    assert policy.is_allowed(ipaddress.ip_address("8.8.8.8")) is True
    assert policy.is_allowed(ipaddress.ip_address("::ffff:127.0.0.1")) is False


@pytest.mark.parametrize("garbage", ["", "localhost", "127.1", "2130706433", "1.2.3.4.5", "::g"])
def test_unparseable_addresses_are_refused(garbage: str) -> None:
    # is_allowed takes resolved addresses only; anything else fails closed.
    assert AddressPolicy(["0.0.0.0/0", "::/0"]).is_allowed(garbage) is False


def test_allowed_networks_exempt_exactly_their_range() -> None:
    policy = AddressPolicy(["127.0.0.2/32", "10.1.0.0/16", "fd00::/8"])
    assert policy.is_allowed("127.0.0.2") is True
    assert policy.is_allowed("::ffff:127.0.0.2") is True  # same destination, mapped
    assert policy.is_allowed("64:ff9b::127.0.0.2") is True  # NAT64 to an exempt IPv4
    assert policy.is_allowed("127.0.0.1") is False
    assert policy.is_allowed("127.0.0.3") is False
    assert policy.is_allowed("10.1.255.255") is True
    assert policy.is_allowed("10.2.0.1") is False
    assert policy.is_allowed("fd12::1") is True
    assert policy.is_allowed("fc00::1") is False
    assert policy.is_allowed("8.8.8.8") is True  # exemptions add, never remove


def test_allowed_network_accepts_bare_address_and_host_bits() -> None:
    policy = AddressPolicy(["169.254.169.254", "192.168.1.7/24", " 10.0.0.0/8 "])
    assert [str(n) for n in policy.allowed_networks] == [
        "169.254.169.254/32",
        "192.168.1.0/24",
        "10.0.0.0/8",
    ]


@pytest.mark.parametrize("bad", ["not-a-cidr", "10.0.0.0/33", "300.1.1.1/8", "", "fe80::/129"])
def test_invalid_cidr_raises_value_error(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid allowed network"):
        AddressPolicy([bad])


def test_non_string_network_raises_value_error() -> None:
    with pytest.raises(ValueError, match="CIDR string"):
        AddressPolicy([167772160])  # type: ignore[list-item]


def test_policy_equality_follows_networks() -> None:
    assert AddressPolicy(["10.0.0.0/8"]) == AddressPolicy(["10.0.0.1/8"])
    assert AddressPolicy(["10.0.0.0/8"]) != AddressPolicy([])


def _resolve(allowed: list[str], host: str) -> list[str]:
    """Resolve ``host`` through a GuardedConnector (made inside a loop, as aiohttp requires)."""

    async def run() -> list[str]:
        connector = GuardedConnector(AddressPolicy(allowed))
        try:
            return [entry["host"] for entry in await connector._resolve_host(host, 80)]
        finally:
            await connector.close()

    return asyncio.run(run())


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "2130706433", "0x7f000001", "0177.0.0.1", "127.1", "0", "::1", "::ffff:7f00:1"],
)
def test_connector_refuses_loopback_literals_in_every_form(host: str) -> None:
    with pytest.raises(ForbiddenURL):
        _resolve([], host)


@pytest.mark.parametrize(
    ("host", "canonical"),
    [("127.0.0.2", "127.0.0.2"), ("2130706434", "127.0.0.2"), ("127.2", "127.0.0.2")],
)
def test_connector_connects_allowed_literals_in_canonical_form(host: str, canonical: str) -> None:
    assert _resolve(["127.0.0.2/32"], host) == [canonical]


def test_socket_guard_refuses_forbidden_address_before_creating_a_socket() -> None:
    async def run() -> None:
        connector = GuardedConnector(AddressPolicy(["127.0.0.2/32"]))
        try:
            tcp = (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "")
            with pytest.raises(ForbiddenAddressError) as caught:
                connector._open_socket((*tcp, ("127.0.0.1", 80)))
            assert isinstance(caught.value, OSError)
            with connector._open_socket((*tcp, ("127.0.0.2", 80))) as sock:
                assert sock.family == socket.AF_INET
        finally:
            await connector.close()

    asyncio.run(run())


def test_guarded_connector_refuses_a_foreign_socket_factory() -> None:
    with pytest.raises(TypeError, match="socket_factory"):
        GuardedConnector(AddressPolicy([]), socket_factory=socket.socket)


def test_caused_by_forbidden_address_walks_the_exception_chain() -> None:
    inner = ForbiddenAddressError("127.0.0.1")
    try:
        try:
            raise inner
        except OSError as exc:
            raise RuntimeError("wrapped") from exc
    except RuntimeError as outer:
        assert caused_by_forbidden_address(outer) is True
    assert caused_by_forbidden_address(RuntimeError("other")) is False
    assert caused_by_forbidden_address(OSError(111, "refused")) is False


class _UnfilteredConnector(GuardedConnector):
    """As if aiohttp stopped calling ``_resolve_host``: only the socket guard is left."""

    async def _resolve_host(self, host: str, port: int, traces: object = None) -> list:
        return await aiohttp.TCPConnector._resolve_host(self, host, port, traces=traces)


def test_socket_guard_alone_keeps_forbidden_addresses_uncontacted() -> None:
    async def run(url: str) -> BaseException:
        connector = _UnfilteredConnector(AddressPolicy(["127.0.0.2/32"]))
        async with aiohttp.ClientSession(connector=connector, trust_env=False) as session:
            with pytest.raises(aiohttp.ClientConnectorError) as caught:
                await session.get(url)
        return caught.value

    with servers.ConnectionCountingServer("127.0.0.1") as forbidden:
        error = asyncio.run(run(forbidden.url("/secret")))
        assert forbidden.connections == 0
    assert isinstance(error.os_error, ForbiddenAddressError)
    assert caused_by_forbidden_address(error) is True
