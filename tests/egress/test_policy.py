"""The allow-list: which patterns are accepted, what they match, which addresses are refused."""

from __future__ import annotations

import ipaddress

import pytest

from rayfine_core.egress import EgressPolicy
from rayfine_core.egress.addresses import is_this_host, parse_ip, refused_reason
from rayfine_core.egress.serve import build_parser
from rayfine_core.errors import ValidationError


@pytest.mark.parametrize(
    "pattern, message",
    [
        ("https://api.example.com", "is a URL"),
        ("api.example.com/v1", "is a URL"),
        ("api.example.com:0", "port must be"),
        ("api.example.com:70000", "port must be"),
        ("api.example.com:http", "port must be"),
        ("*", "allow everything"),
        ("*.com", "top-level domain"),
        ("api.*.example.com", "whole first label"),
        ("**.example.com", "whole first label"),
        ("localhost", "loopback"),
        ("db.localhost:5432", "loopback"),
        ("127.0.0.1", "never reachable"),
        ("[::1]:8080", "never reachable"),
        ("169.254.169.254", "never reachable"),
        ("0x7f.1", "never reachable"),  # 127.0.0.1 in inet_aton's spelling
        ("bad_host!", "not a host name"),
        ("-lead.example.com", "not a host name"),
        ("exämple.com", "xn--"),
        ("a" * 64 + ".com", "not a host name"),
        ("", "not a host name"),
        ("1.2.3", "usual form, 1.2.0.3"),  # inet_aton's reading of it
        ("[2001:DB8:0::5]", None),
    ],
)
def test_bad_patterns_are_refused_with_a_reason(pattern: str, message: str | None) -> None:
    if message is None:  # accepted: an unusual but exact spelling
        assert EgressPolicy([pattern]).rules[0].address is not None
        return
    with pytest.raises(ValidationError, match=message):
        EgressPolicy([pattern])


def test_a_single_string_is_refused() -> None:
    with pytest.raises(ValidationError, match="list of patterns"):
        EgressPolicy.coerce("api.example.com")
    with pytest.raises(ValidationError, match="list of patterns"):
        EgressPolicy("api.example.com")  # type: ignore[arg-type]


def test_names_match_exactly_and_only_on_80_and_443() -> None:
    policy = EgressPolicy(["API.Example.com."])
    assert policy.check_target("api.example.com", 443) is None
    assert policy.check_target("API.EXAMPLE.COM.", 80) is None
    assert policy.check_target("api.example.com", 8443) == "port_not_allowed"
    assert policy.check_target("example.com", 443) == "not_in_allow_list"
    assert policy.check_target("x.api.example.com", 443) == "not_in_allow_list"
    assert policy.check_target("api.example.com.evil.test", 443) == "not_in_allow_list"
    assert policy.check_target("evilapi.example.com", 443) == "not_in_allow_list"


def test_a_port_in_the_pattern_allows_that_port_only() -> None:
    policy = EgressPolicy(["host.example:8443"])
    assert policy.check_target("host.example", 8443) is None
    assert policy.check_target("host.example", 443) == "port_not_allowed"
    both = EgressPolicy(["host.example:8443", "host.example"])
    assert {both.check_target("host.example", p) for p in (80, 443, 8443)} == {None}


def test_wildcards_match_subdomains_but_not_the_domain_itself() -> None:
    policy = EgressPolicy(["*.models.example"])
    assert policy.check_target("a.models.example", 443) is None
    assert policy.check_target("a.b.models.example", 443) is None
    assert policy.check_target("models.example", 443) == "not_in_allow_list"
    assert policy.check_target("evilmodels.example", 443) == "not_in_allow_list"


def test_ip_targets_need_the_literal_in_the_list() -> None:
    policy = EgressPolicy(["api.example.com", "203.0.113.7", "[2001:db8::5]:8443"])
    assert policy.check_target("203.0.113.7", 443) is None  # listed literally: private OK
    assert policy.check_target("203.0.113.8", 443) == "ip_literal_not_listed"
    assert policy.check_target("2001:db8::5", 8443) is None
    assert policy.check_target("2001:db8::5", 443) == "port_not_allowed"
    assert policy.check_target("2001:db8::6", 8443) == "ip_literal_not_listed"
    # A listed name does not allow an address, even one it resolves to.
    assert EgressPolicy(["api.example.com"]).check_target("93.184.216.34", 443) == (
        "ip_literal_not_listed"
    )


@pytest.mark.parametrize(
    "target", ["2130706433", "0x7f000001", "127.1", "0177.0.0.1", "017700000001"]
)
def test_numeric_names_are_judged_as_the_addresses_they_spell(target: str) -> None:
    policy = EgressPolicy(["api.example.com"])
    assert policy.check_target(target, 443) == "ip_literal_not_listed"
    assert parse_ip(target) == ipaddress.ip_address("127.0.0.1")


@pytest.mark.parametrize(
    "address, reason",
    [
        ("127.0.0.1", "address_loopback"),
        ("127.255.255.254", "address_loopback"),
        ("::1", "address_loopback"),
        ("0.0.0.0", "address_unspecified"),
        ("::", "address_unspecified"),
        ("169.254.169.254", "address_link_local"),
        ("fe80::1", "address_link_local"),
        ("224.0.0.1", "address_multicast"),
        ("ff02::1", "address_multicast"),
        ("255.255.255.255", "address_reserved"),
        ("::ffff:127.0.0.1", "address_loopback"),  # IPv4-mapped
        ("::ffff:169.254.169.254", "address_link_local"),
        ("64:ff9b::7f00:1", "address_loopback"),  # NAT64 of 127.0.0.1
        ("2002:7f00:1::1", "address_loopback"),  # 6to4 of 127.0.0.1
        ("2002:a9fe:a9fe::1", "address_link_local"),  # 6to4 of 169.254.169.254
        ("2001:0:4136:e378::1", "address_reserved"),  # Teredo
        ("10.0.0.1", "address_private"),
        ("172.17.0.2", "address_private"),  # another container on docker0
        ("192.168.1.1", "address_private"),
        ("100.64.0.1", "address_private"),
        ("fd00::2", "address_private"),
        ("::ffff:10.0.0.1", "address_private"),
        ("192.0.2.1", "address_private"),  # documentation ranges host real networks too
        ("8.8.8.8", None),
        ("2606:4700::1111", None),
    ],
)
def test_resolved_addresses(address: str, reason: str) -> None:
    policy = EgressPolicy(["api.example.com"])
    assert policy.check_address(ipaddress.ip_address(address)) == reason


def test_allow_private_lets_private_but_never_host_local_addresses_through() -> None:
    everything = EgressPolicy(["api.example.com"], allow_private=True)
    assert everything.check_address(ipaddress.ip_address("10.0.0.1")) is None
    assert everything.check_address(ipaddress.ip_address("127.0.0.1")) == "address_loopback"
    assert everything.check_address(ipaddress.ip_address("169.254.169.254")) == "address_link_local"
    some = EgressPolicy(["api.example.com"], allow_private=["10.1.0.0/16"])
    assert some.check_address(ipaddress.ip_address("10.1.2.3")) is None
    assert some.check_address(ipaddress.ip_address("10.2.0.1")) == "address_private"
    with pytest.raises(ValidationError, match="never reachable"):
        EgressPolicy([], allow_private=["127.0.0.0/8"])
    with pytest.raises(ValidationError, match="never reachable"):
        EgressPolicy([], allow_private=["0.0.0.0/0"])
    with pytest.raises(ValidationError, match="not a network"):
        EgressPolicy([], allow_private=["ten"])


def test_an_empty_list_allows_nothing() -> None:
    assert EgressPolicy([]).check_target("api.example.com", 443) == "not_in_allow_list"


def test_the_command_line_form_gives_back_the_same_policy() -> None:
    policy = EgressPolicy(["a.example", "*.b.example:8443"], allow_private=["10.0.0.0/8"])
    args = build_parser().parse_args(["serve", "--socket", "s", "--env-id", "e", *policy.to_args()])
    again = EgressPolicy(tuple(args.allow), allow_private=tuple(args.allow_private_net))
    assert again == policy
    assert "--allow-private" in EgressPolicy([], allow_private=True).to_args()


def test_this_hosts_own_addresses_are_recognised() -> None:
    assert is_this_host(ipaddress.ip_address("127.0.0.1"))
    assert not is_this_host(ipaddress.ip_address("198.51.100.254"))  # no route: not ours


def test_refused_reason_never_misses_an_embedded_loopback() -> None:
    for text in ("::ffff:7f00:1", "64:ff9b::127.0.0.1"):
        assert refused_reason(ipaddress.ip_address(text)) == "address_loopback"
