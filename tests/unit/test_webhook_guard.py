"""The SSRF guard's decisions, with a stub resolver (nothing here opens a connection)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

import pytest

from proveniq.errors import ValidationError
from proveniq.followers.webhooks.guard import (
    Guard,
    Policy,
    TargetRefused,
    address_class,
)

PUBLIC = "93.184.215.14"


class StubResolver:
    def __init__(self, answers: dict[str, Sequence[str]]) -> None:
        self.answers = answers
        self.calls: list[str] = []

    def __call__(self, host: str) -> Sequence[str]:
        self.calls.append(host)
        if host not in self.answers:
            raise OSError(f"NXDOMAIN {host}")
        return self.answers[host]


REFUSED = [
    ("0.0.0.0", "unspecified"),  # noqa: S104 - an address to refuse, not a bind
    ("0.1.2.3", "unspecified"),
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("10.0.0.1", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("169.254.169.254", "link-local"),  # the metadata server
    ("100.64.0.1", "CGNAT"),
    ("100.127.255.255", "CGNAT"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    ("192.0.2.10", "not globally routable"),  # documentation
    ("198.18.0.1", "not globally routable"),  # benchmarking
    ("::", "unspecified"),
    ("::1", "loopback"),
    ("fc00::1", "unique-local"),
    ("fd12:3456::1", "unique-local"),
    ("fe80::1", "link-local"),
    ("febf::1", "link-local"),
    ("fec0::1", "site-local"),
    ("ff02::1", "multicast"),
    ("::ffff:127.0.0.1", "loopback (IPv4-mapped"),
    ("::ffff:169.254.169.254", "link-local (cloud metadata) (IPv4-mapped"),
    ("::ffff:10.0.0.1", "private (IPv4-mapped"),
    ("::ffff:0:0", "unspecified (IPv4-mapped"),
    ("::10.0.0.1", "private (IPv4-compatible"),
    ("64:ff9b::a9fe:a9fe", "link-local (cloud metadata) (NAT64"),
    ("64:ff9b:1::1", "local-use NAT64"),
    ("2002:0a00:0001::1", "private (6to4"),
    ("2002:a9fe:a9fe::1", "link-local (cloud metadata) (6to4"),
    ("2001:0:4136:e378::1", "Teredo"),
    ("2001:db8::1", "not globally routable"),
]


@pytest.mark.parametrize(("address", "why"), REFUSED)
def test_each_refused_address_class(address: str, why: str) -> None:
    got = address_class(ipaddress.ip_address(address))
    assert got is not None and got.startswith(why)
    literal = f"[{address}]" if ":" in address else address
    with pytest.raises(TargetRefused, match="refused"):
        Guard(resolver=StubResolver({})).check(f"https://{literal}/hook")


@pytest.mark.parametrize(
    "address",
    [PUBLIC, "8.8.8.8", "2606:4700:4700::1111", "::ffff:93.184.215.14", "2002:5db8:d70e::1"],
)
def test_public_addresses_pass(address: str) -> None:
    assert address_class(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(("address", "why"), REFUSED[:20])
def test_a_hostname_resolving_to_a_refused_address_is_refused(address: str, why: str) -> None:
    resolver = StubResolver({"hooks.partner.example": [address]})
    with pytest.raises(TargetRefused) as e:
        Guard(resolver=resolver).check("https://hooks.partner.example/in")
    assert "hooks.partner.example resolves to" in e.value.reason
    assert e.value.field == "url"
    assert isinstance(e.value, ValidationError)


def test_one_refused_address_among_public_ones_refuses_the_name() -> None:
    resolver = StubResolver({"rebind.example": [PUBLIC, "169.254.169.254"]})
    with pytest.raises(TargetRefused, match=re.escape("169.254.169.254")):
        Guard(resolver=resolver).check("https://rebind.example/")


def test_the_host_is_resolved_once_and_the_first_address_is_pinned() -> None:
    resolver = StubResolver({"hooks.partner.example": [PUBLIC, "8.8.8.8"]})
    pinned = Guard(resolver=resolver).check("https://Hooks.Partner.Example:8443/in?x=1")
    assert resolver.calls == ["hooks.partner.example"]
    assert pinned.address == PUBLIC
    t = pinned.target
    assert (t.scheme, t.host, t.port, t.path) == ("https", "hooks.partner.example", 8443, "/in?x=1")


def test_an_ip_literal_is_not_resolved() -> None:
    resolver = StubResolver({})
    assert Guard(resolver=resolver).check(f"https://{PUBLIC}/").address == PUBLIC
    assert resolver.calls == []


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://hooks.partner.example/", "https"),
        ("ftp://hooks.partner.example/", "https"),
        ("hooks.partner.example/in", "absolute"),
        ("https://user:pw@hooks.partner.example/", "credentials"),
        ("https://hooks.partner.example/#frag", "fragment"),
        ("https:///nohost", "no host"),
        ("https://hooks.partner.example:0/", "port 0"),
        ("https://hooks.partner.example:99999/", "malformed"),
        ("https://2130706433/", "numeric"),  # 127.0.0.1 as a decimal
        ("https://0x7f.1/", "numeric"),
        ("https://127.1/", "numeric"),
        ("https://hooks .example/", "whitespace"),
        ("https://hooks.partner.example/\r\nX: y", "whitespace"),
        ("https://bad_host!.example/", "DNS name"),
        ("https://nxdomain.example/", "does not resolve"),
        ("https://" + "a" * 2100 + ".example/", "2048"),
    ],
)
def test_malformed_or_disallowed_urls(url: str, why: str) -> None:
    resolver = StubResolver({"hooks.partner.example": [PUBLIC]})
    with pytest.raises(TargetRefused, match=why):
        Guard(resolver=resolver).check(url)


def test_a_resolver_answering_nothing_or_garbage_is_refused() -> None:
    with pytest.raises(TargetRefused, match="does not resolve"):
        Guard(resolver=StubResolver({"empty.example": []})).check("https://empty.example/")
    with pytest.raises(TargetRefused, match="non-address"):
        Guard(resolver=StubResolver({"junk.example": ["not-an-ip"]})).check("https://junk.example/")


def test_the_loopback_allow_list_opens_loopback_only() -> None:
    local = Guard(policy=Policy.local(), resolver=StubResolver({"localhost": ["127.0.0.1", "::1"]}))
    assert local.check("http://127.0.0.1:8080/hook").address == "127.0.0.1"
    assert local.check("http://[::1]:8080/hook").address == "::1"
    assert local.check("http://localhost:9/").address == "127.0.0.1"
    for url in ("http://10.0.0.1/", "http://169.254.169.254/", "http://[fe80::1]/"):
        with pytest.raises(TargetRefused):
            local.check(url)
    # Without the allow-list the same loopback URL is refused, and http too.
    with pytest.raises(TargetRefused, match="loopback"):
        Guard(policy=Policy(allow_http=True)).check("http://127.0.0.1:8080/hook")
    with pytest.raises(TargetRefused, match="https"):
        Guard(policy=Policy(allowed_networks=Policy.local().allowed_networks)).check(
            "http://127.0.0.1:8080/hook"
        )


@pytest.mark.parametrize("network", ["10.0.0.0/8", "169.254.169.254/32", "0.0.0.0/0", "::/0"])
def test_the_allow_list_cannot_open_anything_but_loopback(network: str) -> None:
    with pytest.raises(ValidationError, match="loopback"):
        Policy.parse(allowed_networks=network)


def test_policy_parse() -> None:
    p = Policy.parse(allowed_networks="127.0.0.0/8, ::1/128", allow_http=True)
    assert p == Policy.local()
    with pytest.raises(ValidationError):
        Policy.parse(allowed_networks="not-a-network")
