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


@dataclass(frozen=True)
class Refused:
    """A network no baseURL may reach, and what lives there. `direct_only`: it matters only to
    an address connected to as it is ("this network" reaches the host itself on Linux); no
    translator or relay forwards to it, so an IPv4 address embedded in IPv6 is not refused
    for it (else every address of a NAT64 prefix whose IPv4 bits read as zero would be)."""

    network: IPNetwork
    what: str
    direct_only: bool = False


def _refused(cidr: str, what: str, *, direct_only: bool = False) -> Refused:
    return Refused(ipaddress.ip_network(cidr), what, direct_only)


#: Refused whatever the allow-list says: link-local (where every cloud serves its instance
#: metadata and credentials), the metadata and credential services outside it, and "this
#: network". The one table of refused addresses: literal hosts, resolved addresses and the
#: IPv4 addresses that IPv6 transition forms carry are all judged by it.
ALWAYS_REFUSED: Final[tuple[Refused, ...]] = (
    # AWS, GCP, Azure, Oracle, OpenStack metadata; ECS (169.254.170.2) and the EKS Pod Identity
    # agent (169.254.170.23) credentials; Tencent (169.254.0.23); Scaleway (169.254.42.42).
    _refused("169.254.0.0/16", "IPv4 link-local, where clouds serve instance metadata"),
    _refused("fe80::/10", "IPv6 link-local"),
    _refused("fd00:ec2::254/128", "AWS instance metadata over IPv6"),
    _refused("fd00:ec2::23/128", "the EKS Pod Identity agent over IPv6"),
    _refused("fd20:ce::254/128", "GCP instance metadata over IPv6"),
    _refused("fd00:c1::a9fe:a9fe/128", "Oracle Cloud instance metadata over IPv6"),
    _refused("100.100.100.200/32", "Alibaba Cloud instance metadata"),
    _refused("168.63.129.16/32", "Azure's WireServer (extension settings, certificates)"),
    _refused("192.0.0.192/32", "Oracle Cloud Classic instance metadata"),
    _refused("0.0.0.0/8", "this network: reaches the host itself", direct_only=True),
    _refused("::/128", "the unspecified address: reaches the host itself", direct_only=True),
)
#: Names that only ever mean a metadata service (fnmatch patterns, lower case): GCP's
#: (`metadata` is its short name through the VM's search domain), AWS's (`instance-data`, in
#: us-east-1 `instance-data.ec2.internal`, elsewhere `instance-data.<region>.compute.internal`)
#: and Tencent's. Azure, Alibaba and Oracle document addresses only; those are in the table above,
#: and whatever a name resolves to is judged by it at connect time anyway.
METADATA_HOSTS: Final = (
    "metadata",
    "metadata.google.internal",
    "metadata.goog",
    "instance-data",
    "instance-data.ec2.internal",
    "instance-data.*.compute.internal",
    "metadata.tencentyun.com",
)

#: IPv6 prefixes whose addresses carry an IPv4 address that a translator, relay or tunnel
#: delivers to: RFC 6052 NAT64 (the well-known prefix is /96 only), SIIT's IPv4-translated form
#: (RFC 2765), 6to4 (RFC 3056), Teredo (RFC 4380) and the deprecated IPv4-compatible form.
_NAT64_WELL_KNOWN: Final = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL_USE: Final = ipaddress.ip_network("64:ff9b:1::/48")
_IPV4_TRANSLATED: Final = ipaddress.ip_network("::ffff:0:0:0/96")
_IPV4_COMPATIBLE: Final = ipaddress.ip_network("::/96")
#: RFC 6052 section 2.2: where the IPv4 bytes sit for each prefix length that fits inside the
#: local-use /48 (byte 8, bits 64-71, is the reserved "u" octet, never part of the address).
#: RFC 8215 lets a network subdivide the /48, so a translator may use any of these layouts: an
#: address is judged by every IPv4 address it may stand for.
_RFC6052_LAYOUTS: Final = ((6, 7, 9, 10), (7, 9, 10, 11), (9, 10, 11, 12), (12, 13, 14, 15))


def embedded_ipv4(address: IPAddress) -> tuple[ipaddress.IPv4Address, ...]:
    """The IPv4 addresses an IPv6 address may deliver to through a translator, relay or
    tunnel; none for a plain address. (IPv4-mapped `::ffff:a.b.c.d` is not one of these: the
    kernel connects to it as the IPv4 address itself, so `unmapped` makes it that address.)"""
    if not isinstance(address, ipaddress.IPv6Address):
        return ()
    packed = address.packed
    if address in _NAT64_WELL_KNOWN or address in _IPV4_TRANSLATED:
        return (ipaddress.IPv4Address(packed[12:]),)
    if address in _NAT64_LOCAL_USE:
        readings = (bytes(packed[i] for i in layout) for layout in _RFC6052_LAYOUTS)
        return tuple(dict.fromkeys(ipaddress.IPv4Address(reading) for reading in readings))
    if address.sixtofour is not None:
        return (address.sixtofour,)
    if address.teredo is not None:
        return (address.teredo[1],)  # the client: where the relay delivers
    if address in _IPV4_COMPATIBLE and int(address) > 1:  # not :: nor ::1 (loopback)
        return (ipaddress.IPv4Address(packed[12:]),)
    return ()


def refusal(address: IPAddress) -> Refused | None:
    """The entry of ALWAYS_REFUSED that `address`, or an IPv4 address it carries, falls in."""
    for entry in ALWAYS_REFUSED:
        if address in entry.network:
            return entry
    for carried in embedded_ipv4(address):
        for entry in ALWAYS_REFUSED:
            if not entry.direct_only and carried in entry.network:
                return entry
    return None


def is_metadata_host(host: str) -> bool:
    return any(fnmatch.fnmatchcase(host, pattern) for pattern in METADATA_HOSTS)


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
        if is_metadata_host(host):
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
        """Refuse an address `host` resolved to (or is). An IPv6 address that carries an IPv4
        one (NAT64, 6to4, Teredo, ...) is judged by that IPv4 address too: refused if it is
        refused, and under an allow-list of networks admitted only if the IPv6 address is in
        one, or every IPv4 address it may stand for is."""
        address = unmapped(address)
        carried = embedded_ipv4(address)
        shown = f"{address} ({', '.join(map(str, carried))})" if carried else str(address)
        refused = refusal(address)
        if refused is not None:
            raise EndpointRefusedError(
                f"host {host} resolves to {shown}, a link-local or metadata address"
                f" ({refused.what})"
            )
        if not self.restricted or self._name_allowed(host):
            return
        if not (
            self._network_allowed(address)
            or (carried and all(self._network_allowed(ipv4) for ipv4 in carried))
        ):
            raise EndpointRefusedError(
                f"host {host} ({shown}) is not in EGP_OPERATOR_ALLOWED_HOSTS"
            )

    def _network_allowed(self, address: IPAddress) -> bool:
        return any(address in network for network in self.allowed_networks)

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


def unmapped(address: IPAddress) -> IPAddress:
    """An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) as the IPv4 address the kernel connects
    to; any other address as it is."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def literal_address(host: str) -> IPAddress | None:
    try:
        return unmapped(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None
