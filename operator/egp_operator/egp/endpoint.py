"""Which EGP endpoints a tenant's `baseURL` may point the operator at.

A `baseURL` is written by a tenant, so it is checked twice: its host by name before any request
(`EndpointPolicy.check_url`), and every address it resolves to at connect time
(`transport.GuardedResolver`), so that a name that resolves to a refused address, or is
re-pointed at one between the two checks (DNS rebinding), is refused too. The default refuses
link-local and cloud-metadata addresses; a platform admin may allow only some hosts
(`EGP_OPERATOR_ALLOWED_HOSTS`). docs/security.md says what a NetworkPolicy adds.
"""

from __future__ import annotations

import fnmatch
import functools
import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

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

    @functools.lru_cache(maxsize=4096)  # noqa: B019 - policies live as long as the process
    def check_url(self, url: str) -> None:
        """Refuse a URL whose host may not be called, before anything is sent to it. A URL
        that passed is remembered: every cycle of a source checks the same one."""
        try:
            host = httpx.URL(check_base_url(url)).host.lower().rstrip(".")
        except ValueError as error:
            raise EndpointRefusedError(str(error)) from None
        if host in METADATA_HOSTS:
            raise EndpointRefusedError(f"host {host} is a cloud metadata service")
        address = literal_address(host)
        legacy = _legacy_ipv4_address(host) if address is None else None
        if legacy is not None:
            self.check_address(legacy, host)
            raise EndpointRefusedError(
                f"host {host} is a numeric address that is not a dotted quad; write {legacy}"
            )
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


_LEGACY_IPV4: Final = re.compile(r"[0-9a-fA-FxX.]+")


def _legacy_ipv4_address(host: str) -> ipaddress.IPv4Address | None:
    """The address a legacy numeric host (`0`, `127.1`, `2130706433`, `0x7f.1`) stands for.
    The resolver reads such a name as that address, so a policy that saw only a name would be
    bypassed; the operator's HTTP client refuses to connect to one anyway."""
    if not _LEGACY_IPV4.fullmatch(host):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def literal_address(host: str) -> IPAddress | None:
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address
