"""Which baseURLs a tenant may point the operator at: the shape of the URL, and the host.

Every refused spelling is tried twice: as the literal host of a baseURL (`check_url`, before
any request) and as what a name resolves to (the real `GuardedResolver`, with the event loop's
`getaddrinfo` answering that address, as a tenant's DNS would)."""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from typing import Any

import pytest

from egp_operator.egp import EndpointRefusedError
from egp_operator.egp.endpoint import EndpointPolicy, check_base_url
from egp_operator.egp.transport import GuardedResolver

OPEN = EndpointPolicy()
NAMES = ["api.egp.scale.com", "*.egp.example.com"]
HOSTS_ONLY = EndpointPolicy.from_patterns(NAMES)
PLATFORM = EndpointPolicy.from_patterns([*NAMES, "10.20.0.0/16"])


@pytest.mark.parametrize(
    "url",
    [
        "https://api.egp.scale.com",
        "http://127.0.0.1:5003/public",
        "http://[::1]:8080/prefix/",
        "https://egp.internal.example.com/a/b",
    ],
)
def test_a_host_with_an_optional_path_prefix_is_a_valid_base_url(url: str) -> None:
    assert check_base_url(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "http://internal/secret?x=",  # a query picks any path and parameters
        "http://internal/secret?",
        "http://egp/#fragment",
        "http://user:password@egp/",  # credentials the tenant chose
        "http://egp@169.254.169.254/",
        "http://egp\\@evil/",
        "http://egp/a b",
        "http://egp/\n",
        "ftp://egp/",
        "file:///etc/passwd",
        "http:///path",
        "http://egp:99999/",
        "//egp/",
    ],
)
def test_a_base_url_with_query_fragment_userinfo_or_odd_characters_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="baseURL"):
        check_base_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data",
        "http://[fe80::1]/",
        "http://[fd00:ec2::254]/",
        "http://[::ffff:169.254.169.254]/",
        "http://100.100.100.200/",
        "http://0.0.0.0:8080/",
        "http://metadata.google.internal/computeMetadata/v1",
        "http://METADATA.google.internal./",
    ],
)
def test_link_local_and_metadata_endpoints_are_refused_even_without_an_allow_list(
    url: str,
) -> None:
    with pytest.raises(EndpointRefusedError):
        OPEN.check_url(url)
    with pytest.raises(EndpointRefusedError):
        PLATFORM.check_url(url)


@pytest.mark.parametrize(
    "url",
    ["https://api.egp.scale.com", "https://eu.egp.example.com/v", "http://10.20.3.4:8080"],
)
def test_the_allow_list_admits_its_hosts_wildcards_and_networks(url: str) -> None:
    PLATFORM.check_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://api.egp.scale.com.evil.example",
        "https://egp.example.com",  # the wildcard needs a label before it
        "http://10.21.0.1",
        "http://127.0.0.1:8080",
        "http://kubernetes.default.svc",
    ],
)
def test_an_allow_list_of_names_refuses_everything_else_before_any_request(url: str) -> None:
    with pytest.raises(EndpointRefusedError, match="EGP_OPERATOR_ALLOWED_HOSTS"):
        HOSTS_ONLY.check_url(url)


@pytest.mark.parametrize("url", ["http://10.21.0.1", "http://127.0.0.1:8080"])
def test_an_address_outside_the_allowed_networks_is_refused_before_any_request(url: str) -> None:
    with pytest.raises(EndpointRefusedError, match="EGP_OPERATOR_ALLOWED_HOSTS"):
        PLATFORM.check_url(url)


def test_an_allowed_name_that_resolves_to_a_metadata_address_is_still_refused() -> None:
    with pytest.raises(EndpointRefusedError, match="link-local or metadata"):
        PLATFORM.check_address(ipaddress.ip_address("169.254.169.254"), "api.egp.scale.com")


def test_an_unlisted_name_connects_only_to_an_allowed_network() -> None:
    PLATFORM.check_url("http://egp.corp")  # decided at connect time, by its addresses
    PLATFORM.check_address(ipaddress.ip_address("10.20.0.9"), "egp.corp")
    with pytest.raises(EndpointRefusedError):
        PLATFORM.check_address(ipaddress.ip_address("10.30.0.9"), "egp.corp")


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("http://0:8080", "0.0.0.0"),  # noqa: S104 - an address under test
        ("http://0x0/", "0.0.0.0"),  # noqa: S104
        ("http://169.254.43518/", "169.254.169.254"),
        ("http://2852039166/", "169.254.169.254"),
    ],
)
def test_a_legacy_numeric_host_of_a_metadata_address_is_refused_as_that_address(
    url: str, address: str
) -> None:
    refused = f"resolves to {re.escape(address)}, a link-local"
    with pytest.raises(EndpointRefusedError, match=refused):
        OPEN.check_url(url)


@pytest.mark.parametrize("url", ["http://127.1:8080", "http://2130706433/", "http://0x7f.1/"])
def test_a_legacy_numeric_host_is_refused_with_its_dotted_quad(url: str) -> None:
    with pytest.raises(EndpointRefusedError, match=r"not a dotted quad; write 127\.0\.0\.1"):
        OPEN.check_url(url)


def test_a_name_made_of_hex_letters_is_still_a_name() -> None:
    OPEN.check_url("http://deadbeef.example/")
    OPEN.check_url("http://cafe/")


# ---- IPv6 transition forms, cloud metadata over IPv6, metadata names ---------------------------

#: An address, and the IPv4 address a translator, relay or tunnel would deliver it to.
CARRIERS_OF_METADATA = {
    "64:ff9b::a9fe:a9fe": "169.254.169.254",  # NAT64, the well-known prefix (RFC 6052)
    "64:ff9b::169.254.169.254": "169.254.169.254",  # the same, written with a dotted quad
    "64:ff9b::6464:64c8": "100.100.100.200",  # Alibaba's metadata through NAT64
    "64:ff9b:1:a9fe:a9:fe00::": "169.254.169.254",  # local-use NAT64 /48, around the u octet
    "64:ff9b:1::a9fe:a9fe": "169.254.169.254",  # local-use NAT64, a /96 inside it (RFC 8215)
    "2002:a9fe:a9fe::1": "169.254.169.254",  # 6to4
    "2002:a9fe:aa17::": "169.254.170.23",  # 6to4 of the EKS Pod Identity agent
    "2001:0:4136:e378:8000:63bf:5601:5601": "169.254.169.254",  # Teredo (client bits inverted)
    "::169.254.169.254": "169.254.169.254",  # IPv4-compatible
    "::ffff:0:169.254.169.254": "169.254.169.254",  # IPv4-translated (SIIT)
}
#: Metadata and credential services at addresses of their own, outside link-local.
METADATA_ADDRESSES = [
    "fd00:ec2::254",  # AWS instance metadata over IPv6
    "fd00:ec2::23",  # EKS Pod Identity agent over IPv6
    "169.254.170.23",  # ... and over IPv4
    "fd20:ce::254",  # GCP metadata over IPv6
    "fd00:c1::a9fe:a9fe",  # Oracle Cloud metadata over IPv6
    "168.63.129.16",  # Azure WireServer
    "192.0.0.192",  # Oracle Cloud Classic metadata
]
REFUSED_ADDRESSES = [*CARRIERS_OF_METADATA, *METADATA_ADDRESSES]


def url_of(address: str) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:8080/v"


def answering(monkeypatch: pytest.MonkeyPatch, *addresses: str) -> None:
    """The running loop's resolver answers every name with `addresses`."""

    async def getaddrinfo(host: Any, port: Any, **_: Any) -> list[Any]:
        return [
            (
                socket.AF_INET6 if ":" in address else socket.AF_INET,
                socket.SOCK_STREAM,
                socket.IPPROTO_TCP,
                "",
                (address, port, 0, 0) if ":" in address else (address, port),
            )
            for address in addresses
        ]

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", getaddrinfo)


async def resolve(policy: EndpointPolicy, host: str) -> list[str]:
    return [result["host"] for result in await GuardedResolver(policy).resolve(host, 443)]


@pytest.mark.parametrize("address", REFUSED_ADDRESSES)
def test_a_transition_form_or_metadata_address_is_refused_as_a_base_url(address: str) -> None:
    for policy in (OPEN, PLATFORM):
        with pytest.raises(EndpointRefusedError, match="link-local or metadata") as raised:
            policy.check_url(url_of(address))
        assert CARRIERS_OF_METADATA.get(address, "") in raised.value.message


@pytest.mark.parametrize("address", REFUSED_ADDRESSES)
async def test_a_name_resolving_to_a_transition_form_or_metadata_address_is_refused(
    address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    answering(monkeypatch, "203.0.113.7", address)  # one good address does not save it

    for policy in (OPEN, PLATFORM):
        with pytest.raises(EndpointRefusedError, match="link-local or metadata"):
            await resolve(policy, "api.egp.scale.com")


@pytest.mark.parametrize(
    "host",
    [
        "metadata.goog",
        "instance-data.ec2.internal",
        "instance-data.eu-west-1.compute.internal",
        "INSTANCE-DATA",
        "metadata.tencentyun.com",
    ],
)
def test_every_documented_metadata_name_is_refused(host: str) -> None:
    with pytest.raises(EndpointRefusedError, match="cloud metadata service"):
        OPEN.check_url(f"http://{host}/")


@pytest.mark.parametrize(
    ("metadata", "ordinary"),
    [
        ("64:ff9b::a9fe:a9fe", "64:ff9b::5db8:d822"),  # ordinary: 93.184.216.34
        ("64:ff9b:1:a9fe:a9:fe00::", "64:ff9b:1:5db8:d8:2200::"),
        # A local-use /96: its /48 reading is 0.0.0.0, which no translator forwards to.
        ("64:ff9b:1::a9fe:a9fe", "64:ff9b:1::5db8:d822"),
        ("2002:a9fe:a9fe::1", "2002:5db8:d822::1"),
        ("2001:0:4136:e378:8000:63bf:5601:5601", "2001:0:4136:e378:8000:63bf:a247:27dd"),
        ("::169.254.169.254", "::93.184.216.34"),
        ("::ffff:0:169.254.169.254", "::ffff:0:93.184.216.34"),
    ],
)
async def test_a_transition_form_is_judged_by_the_ipv4_it_carries_and_nothing_else(
    metadata: str, ordinary: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(EndpointRefusedError, match="link-local or metadata"):
        OPEN.check_url(url_of(metadata))
    OPEN.check_url(url_of(ordinary))
    answering(monkeypatch, ordinary)
    assert await resolve(OPEN, "egp.example.com") == [str(ipaddress.ip_address(ordinary))]


NAT64_OF_ALLOWED, NAT64_OF_OTHER = "64:ff9b::a14:9", "64:ff9b::a1e:9"  # 10.20.0.9, 10.30.0.9


@pytest.mark.parametrize("address", [NAT64_OF_ALLOWED, "2002:a14:9::", "::ffff:0:10.20.0.9"])
async def test_under_an_allow_list_a_transition_form_is_judged_as_the_ipv4_it_carries(
    address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    PLATFORM.check_url(url_of(address))
    answering(monkeypatch, address)
    assert await resolve(PLATFORM, "egp.corp") == [str(ipaddress.ip_address(address))]


async def test_under_an_allow_list_a_transition_form_of_another_network_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    outside = re.escape(f"({NAT64_OF_OTHER} (10.30.0.9)) is not in EGP_OPERATOR_ALLOWED_HOSTS")
    with pytest.raises(EndpointRefusedError, match=outside):
        PLATFORM.check_url(url_of(NAT64_OF_OTHER))
    answering(monkeypatch, NAT64_OF_OTHER)
    with pytest.raises(EndpointRefusedError, match=outside):
        await resolve(PLATFORM, "egp.corp")


def test_an_allowed_translation_prefix_still_refuses_the_metadata_it_carries() -> None:
    nat64 = EndpointPolicy.from_patterns(["64:ff9b::/96"])

    nat64.check_url(url_of("64:ff9b::5db8:d822"))
    with pytest.raises(EndpointRefusedError, match=r"\(169\.254\.169\.254\), a link-local"):
        nat64.check_url(url_of("64:ff9b::a9fe:a9fe"))
