"""The SSRF guard: which webhook URLs may be called, and the one address to call.

Policy, checked when a subscription is created or changed and again before every attempt:

- ``https`` only (``http`` only with `Policy.allow_http`, for the local stack); no credentials
  or fragment in the URL; numeric host names must be canonical IP literals (``2130706433``,
  ``0x7f.1`` or ``127.1`` are refused, not guessed at).
- The host is resolved **once** through the injected resolver. Every address it resolves to
  must be public, otherwise the URL is refused; the first address is *pinned*: the sender
  connects to it and to nothing else (no second lookup a DNS-rebinding answer could change).
- Refused: unspecified (0.0.0.0/8, ::), loopback (127/8, ::1), private (10/8, 172.16/12,
  192.168/16), link-local (169.254/16, the metadata server; fe80::/10), shared CGNAT space
  (100.64/10), multicast (224/4, ff00::/8), reserved (240/4, broadcast), IPv6 unique-local
  (fc00::/7) and site-local (fec0::/10), and anything else not globally routable
  (documentation, benchmarking, ...). IPv4 embedded in IPv6 (IPv4-mapped ::ffff:0:0/96,
  IPv4-compatible ::/96, NAT64 64:ff9b::/96, 6to4 2002::/16) is judged by its IPv4 address;
  Teredo (2001::/32) and local-use NAT64 (64:ff9b:1::/48) are refused outright.
- `Policy.allowed_networks` is an allow-list for loopback only (the local stack sets it,
  e.g. ``127.0.0.0/8,::1/128``); it cannot open private or metadata addresses.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from proveniq.errors import ValidationError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str], Sequence[str]]

LOOPBACK: Final = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
_N = ipaddress.ip_network
_V4_CLASSES: Final[tuple[tuple[IPNetwork, str], ...]] = (
    (_N("0.0.0.0/8"), "unspecified"),
    (_N("127.0.0.0/8"), "loopback"),
    (_N("10.0.0.0/8"), "private"),
    (_N("172.16.0.0/12"), "private"),
    (_N("192.168.0.0/16"), "private"),
    (_N("169.254.0.0/16"), "link-local (cloud metadata)"),
    (_N("100.64.0.0/10"), "CGNAT shared address space"),
    (_N("224.0.0.0/4"), "multicast"),
    (_N("240.0.0.0/4"), "reserved"),
)
_V6_CLASSES: Final[tuple[tuple[IPNetwork, str], ...]] = (
    (_N("::/128"), "unspecified"),
    (_N("::1/128"), "loopback"),
    (_N("fc00::/7"), "unique-local"),
    (_N("fe80::/10"), "link-local"),
    (_N("fec0::/10"), "site-local"),
    (_N("ff00::/8"), "multicast"),
    (_N("2001::/32"), "Teredo"),
    (_N("64:ff9b:1::/48"), "local-use NAT64"),
)
_EMBEDDED_V4: Final = (
    (_N("::ffff:0:0/96"), "IPv4-mapped", 0),
    (_N("64:ff9b::/96"), "NAT64", 0),
    (_N("::/96"), "IPv4-compatible", 0),
    (_N("2002::/16"), "6to4", 80),  # bits 16..48 hold the IPv4 address
)
_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")
_NUMERIC_LOOKING = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")


class TargetRefused(ValidationError):
    """The URL may not be called; `reason` says why (also the message)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, field="url")
        self.reason = reason


def system_resolver(host: str) -> list[str]:
    """All addresses of ``host`` (getaddrinfo), in the resolver's order, de-duplicated."""
    infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def address_class(address: IPAddress) -> str | None:
    """The refused class an address falls in, or None if it is public."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            return "scoped IPv6 address"
        for net, name in _V6_CLASSES:  # first: :: and ::1 are also in ::/96
            if address in net:
                return name
        for net, kind, shift in _EMBEDDED_V4:
            if address in net:
                v4 = ipaddress.IPv4Address((int(address) >> shift) & 0xFFFFFFFF)
                inner = address_class(v4)
                return None if inner is None else f"{inner} ({kind} {v4})"
    else:
        for net, name in _V4_CLASSES:
            if address in net:
                return name
    if not address.is_global:
        return "not globally routable"
    return None


@dataclass(frozen=True, kw_only=True)
class Target:
    url: str
    scheme: str  # "https" | "http"
    host: str  # ASCII (IDNA) host name or IP literal, no brackets
    port: int
    path: str  # path + query, at least "/"


@dataclass(frozen=True, kw_only=True)
class Pinned:
    target: Target
    address: str  # the one address to connect to


@dataclass(frozen=True, kw_only=True)
class Policy:
    allow_http: bool = False
    allowed_networks: tuple[IPNetwork, ...] = ()

    def __post_init__(self) -> None:
        for net in self.allowed_networks:
            if not any(
                net.version == lo.version and net.subnet_of(lo)  # type: ignore[arg-type]
                for lo in LOOPBACK
            ):
                raise ValidationError(
                    f"{net} is not loopback: only loopback may be allow-listed",
                    field="allowed_networks",
                )

    @classmethod
    def parse(cls, *, allowed_networks: str = "", allow_http: bool = False) -> Policy:
        """From settings text: comma-separated CIDRs (loopback only)."""
        try:
            nets = tuple(
                ipaddress.ip_network(p.strip()) for p in allowed_networks.split(",") if p.strip()
            )
        except ValueError as e:
            raise ValidationError(str(e), field="allowed_networks") from e
        return cls(allow_http=allow_http, allowed_networks=nets)

    @classmethod
    def local(cls) -> Policy:
        """The local stack's: http allowed, loopback allow-listed."""
        return cls(allow_http=True, allowed_networks=LOOPBACK)

    def refusal(self, address: IPAddress) -> str | None:
        if any(address in net for net in self.allowed_networks):
            return None
        return address_class(address)


def parse_target(url: str, policy: Policy) -> Target:
    if not isinstance(url, str) or not url or len(url) > 2048:
        raise TargetRefused("url must be a string of 1 to 2048 characters")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise TargetRefused("url must not contain whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise TargetRefused(f"malformed url: {e}") from e
    scheme = parts.scheme.lower()
    if scheme != "https" and not (scheme == "http" and policy.allow_http):
        raise TargetRefused("url must use https" if scheme else "url must be absolute (https://)")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused("url must not contain credentials")
    if parts.fragment or url.endswith("#"):
        raise TargetRefused("url must not contain a fragment")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise TargetRefused("url has no host")
    if port == 0:
        raise TargetRefused("port 0 is not a port")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        host = _check_host_name(host)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(
        url=url,
        scheme=scheme,
        host=host,
        port=port or (443 if scheme == "https" else 80),
        path=path,
    )


def _check_host_name(host: str) -> str:
    try:
        ascii_host = host.encode("idna").decode("ascii").lower()
    except UnicodeError as e:
        raise TargetRefused(f"host is not a valid name: {e}") from e
    labels = ascii_host.split(".")
    if len(ascii_host) > 253 or not all(_LABEL.match(label) for label in labels):
        raise TargetRefused("host is not a valid DNS name")
    if _NUMERIC_LOOKING.match(labels[-1]):
        raise TargetRefused("numeric host must be a canonical IP address literal")
    return ascii_host


class Guard:
    """Decides whether a URL may be called and pins the address to call."""

    def __init__(self, *, policy: Policy | None = None, resolver: Resolver = system_resolver):
        self.policy = policy or Policy()
        self._resolve = resolver

    def check(self, url: str) -> Pinned:
        """The pinned target, or `TargetRefused` naming why not."""
        target = parse_target(url, self.policy)
        try:
            literal: IPAddress | None = ipaddress.ip_address(target.host)
        except ValueError:
            literal = None
        if literal is not None:
            addresses: list[IPAddress] = [literal]
        else:
            try:
                resolved = list(self._resolve(target.host))
                addresses = [ipaddress.ip_address(a) for a in resolved]
            except (OSError, UnicodeError) as e:
                raise TargetRefused(f"host {target.host} does not resolve: {e}") from e
            except ValueError as e:
                raise TargetRefused(f"host {target.host} resolved to a non-address: {e}") from e
            if not addresses:
                raise TargetRefused(f"host {target.host} does not resolve")
        for a in addresses:
            why = self.policy.refusal(a)
            if why is not None:
                via = "" if literal is not None else f"{target.host} resolves to "
                raise TargetRefused(f"{via}{a}: {why} addresses are refused")
        return Pinned(target=target, address=str(addresses[0]))
