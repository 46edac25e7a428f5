"""Which EGP endpoints a tenant's `baseURL` may point the operator at.

A `baseURL` is written by a tenant, so it is checked twice: its host by name before any request
(`EndpointPolicy.check_url`), and every address it resolves to at connect time
(`GuardedTransport`), so that a name that resolves to a refused address, or is re-pointed at
one between the two checks (DNS rebinding), is refused too. The default refuses link-local and
cloud-metadata addresses; a platform admin may allow only some hosts
(`EGP_OPERATOR_ALLOWED_HOSTS`). docs/security.md says what a NetworkPolicy adds.
"""

from __future__ import annotations

import asyncio
import fnmatch
import ipaddress
import re
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

import httpcore
import httpx

from egp_operator.egp.errors import EndpointRefusedError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Refused whatever the allow-list says: link-local (where every cloud serves its instance
#: metadata and credentials), the metadata addresses outside it, and "this network".
ALWAYS_REFUSED: Final[tuple[IPNetwork, ...]] = tuple(
    ipaddress.ip_network(cidr)
    for cidr in (
        "169.254.0.0/16",  # IPv4 link-local: AWS, GCP, Azure, OpenStack metadata
        "fe80::/10",  # IPv6 link-local
        "fd00:ec2::254/128",  # AWS metadata over IPv6
        "100.100.100.200/32",  # Alibaba Cloud metadata
        "0.0.0.0/8",  # "this network": reaches the host itself on Linux
        "::/128",
    )
)
#: Names that only ever mean a metadata service.
METADATA_HOSTS: Final = frozenset({"metadata.google.internal", "metadata", "instance-data"})


#: The shape of an acceptable baseURL, for the CRD schema and for `check_base_url`: http(s), a
#: host with no userinfo, an optional path prefix, and no query, fragment, space, control
#: character or backslash (which some parsers read as a slash).
BASE_URL_PATTERN: Final = r"^https?://[^\x00-\x20\x7f/?#@\\]+(/[^\x00-\x20\x7f?#\\]*)?$"
_BASE_URL: Final = re.compile(BASE_URL_PATTERN)


def check_base_url(url: str) -> str:
    """`url` if it can only ever name `<host>/<prefix>/v5/models`, else ValueError.

    A query would let a tenant pick any path and parameters on the host; userinfo would be
    sent as credentials the tenant chose."""
    if not _BASE_URL.fullmatch(url):
        raise ValueError(
            "baseURL must be http(s)://host[:port][/path] with no user, query or fragment"
        )
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        raise ValueError("baseURL is not a valid URL") from None
    if not parsed.host:
        raise ValueError("baseURL has no host")
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise ValueError("baseURL has a port out of range")
    return url


@dataclass(frozen=True)
class EndpointPolicy:
    """`allowed`: host patterns (`api.egp.scale.com`, `*.example.com`) and networks
    (`10.0.0.0/8`); empty allows every host that is not always refused."""

    allowed_names: tuple[str, ...] = ()
    allowed_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_patterns(cls, patterns: Iterable[str]) -> EndpointPolicy:
        names: list[str] = []
        networks: list[IPNetwork] = []
        for raw in patterns:
            pattern = raw.strip().lower().rstrip(".")
            if not pattern:
                continue
            try:
                networks.append(ipaddress.ip_network(pattern, strict=False))
            except ValueError:
                names.append(pattern)
        return cls(tuple(names), tuple(networks))

    @property
    def restricted(self) -> bool:
        return bool(self.allowed_names or self.allowed_networks)

    def check_url(self, url: str) -> None:
        """Refuse a URL whose host may not be called, before anything is sent to it."""
        try:
            host = httpx.URL(check_base_url(url)).host.lower().rstrip(".")
        except ValueError as error:
            raise EndpointRefusedError(str(error)) from None
        if host in METADATA_HOSTS:
            raise EndpointRefusedError(f"host {host} is a cloud metadata service")
        address = _literal_address(host)
        if address is not None:
            self.check_address(address, host)
        elif self.restricted and not self._name_allowed(host) and not self.allowed_networks:
            raise EndpointRefusedError(f"host {host} is not in EGP_OPERATOR_ALLOWED_HOSTS")
        # A name outside the allowed names may still resolve into an allowed network: the
        # connect-time check decides, address by address.

    def check_address(self, address: IPAddress, host: str) -> None:
        """Refuse an address `host` resolved to (or is)."""
        if any(address in network for network in ALWAYS_REFUSED):
            raise EndpointRefusedError(
                f"host {host} resolves to {address}, a link-local or metadata address"
            )
        if not self.restricted or self._name_allowed(host):
            return
        if not any(address in network for network in self.allowed_networks):
            raise EndpointRefusedError(
                f"host {host} ({address}) is not in EGP_OPERATOR_ALLOWED_HOSTS"
            )

    def _name_allowed(self, host: str) -> bool:
        return any(fnmatch.fnmatchcase(host, pattern) for pattern in self.allowed_names)


def _literal_address(host: str) -> IPAddress | None:
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves the host itself, checks every address, and connects to a checked one: the
    address that is checked is the address that is used."""

    def __init__(self, policy: EndpointPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await _resolve(host, port)
        for address in addresses:
            self._policy.check_address(address, host.lower())
        return await self._inner.connect_tcp(
            str(addresses[0]), port, timeout, local_address, socket_options
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not EGP endpoints")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


async def _resolve(host: str, port: int) -> list[IPAddress]:
    literal = _literal_address(host)
    if literal is not None:
        return [literal]
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as error:
        raise httpcore.ConnectError(f"cannot resolve {host}: {error.strerror}") from None
    addresses: list[IPAddress] = []
    for info in infos:
        address = _literal_address(str(info[4][0]).split("%", 1)[0])
        if address is not None and address not in addresses:
            addresses.append(address)
    if not addresses:
        raise httpcore.ConnectError(f"{host} has no address")
    return addresses


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport, connecting only to addresses the policy allows. No proxy is used
    (an explicit transport turns off httpx's proxy variables), so the address checked is the
    EGP endpoint's own."""

    def __init__(
        self,
        policy: EndpointPolicy,
        ssl_context: ssl.SSLContext,
        *,
        max_connections: int = 10,
        keepalive_expiry: float | None = None,
    ) -> None:
        super().__init__(verify=ssl_context)
        # httpx builds its pool without a way to pass a network backend; this is the pool it
        # would build, with one.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            network_backend=_GuardedBackend(policy),
            max_connections=max_connections,
            keepalive_expiry=keepalive_expiry,
        )

    def open_connections(self) -> int:
        return len(self._pool.connections)
