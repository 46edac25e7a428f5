"""Which baseURLs a tenant may point the operator at: the shape of the URL, and the host."""

from __future__ import annotations

import ipaddress
import re

import pytest

from egp_operator.egp import EndpointRefusedError
from egp_operator.egp.endpoint import EndpointPolicy, check_base_url

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
