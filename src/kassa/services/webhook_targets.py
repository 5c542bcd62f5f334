"""Where an outgoing webhook may go: `http(s)` URLs whose host resolves to public addresses.

An endpoint URL is an admin's way to make kassa's worker send requests. Pointed inside the
network it would reach what the internet cannot: a cloud's metadata service
(169.254.169.254), a database's HTTP port, an internal admin API (SSRF). So unless
`KASSA_WEBHOOKS_ALLOW_PRIVATE_TARGETS=1` (the demo and tests, whose receivers run on this
machine), every address the host resolves to must be globally routable: loopback, private
(RFC 1918, IPv6 ULA), link-local, shared (CGNAT), unspecified, multicast and reserved
addresses are refused, IPv4-mapped IPv6 addresses as the IPv4 address they carry.

The check runs twice: when the URL is set (422 `webhook_url_not_allowed`), and again at
every delivery, because a name's answer can change after it was vetted (DNS rebinding).
At delivery the request then goes to the address that was vetted (`PinnedTarget`), not to
whatever a second lookup would answer.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit, urlunsplit

from kassa.domain.errors import DomainError, FieldProblem, invalid

NOT_ALLOWED = "webhook_url_not_allowed"
MAX_URL = 2048

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# what resolves a host (socket.getaddrinfo by default; tests pass their own)
Resolver = Callable[[str, int], Sequence[str]]


def getaddrinfo_resolver(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, for TCP, in the resolver's order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class TargetRefused(Exception):
    """A URL kassa will not send to; `str()` says why, in one line."""


def _refused(reason: str) -> DomainError:
    return invalid(
        NOT_ALLOWED,
        f"the webhook URL is not allowed: {reason}",
        FieldProblem(("body", "url"), reason, NOT_ALLOWED),
    )


def is_public(address: IpAddress) -> bool:
    """Whether `address` is one the internet routes: not loopback, private, link-local,
    shared, unspecified, multicast or reserved (an IPv4-mapped IPv6 address is judged as
    the IPv4 address it carries)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast and not address.is_reserved


@dataclass(frozen=True, slots=True)
class PinnedTarget:
    """Where one request goes: `url` with the host replaced by the vetted address (when
    pinned), plus the `Host` header and TLS server name the original host asks for."""

    url: str
    host_header: str | None
    sni_hostname: str | None


def parse(url: str) -> SplitResult:
    """The URL's parts if it is an absolute `http(s)` URL with a host; else TargetRefused."""
    if len(url) > MAX_URL:
        raise TargetRefused(f"longer than {MAX_URL} characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError on a port out of range)
    except ValueError as exc:
        raise TargetRefused(f"not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise TargetRefused("only http and https URLs are allowed")
    if not parts.hostname:
        raise TargetRefused("the URL has no host")
    if parts.username or parts.password:
        raise TargetRefused("credentials in the URL are not allowed; use the signature")
    return parts


def _port(parts: SplitResult) -> int:
    return parts.port or (443 if parts.scheme == "https" else 80)


def vetted_addresses(parts: SplitResult, resolver: Resolver) -> list[IpAddress]:
    """The addresses the URL's host resolves to, all public; else TargetRefused."""
    host = parts.hostname or ""
    try:
        literal: IpAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [literal]
    else:
        try:
            addresses = [
                ipaddress.ip_address(a.split("%")[0]) for a in resolver(host, _port(parts))
            ]
        except (OSError, UnicodeError, ValueError) as exc:
            raise TargetRefused(f"the host {host!r} does not resolve ({exc})") from None
        if not addresses:
            raise TargetRefused(f"the host {host!r} does not resolve")
    for address in addresses:
        if not is_public(address):
            shown = str(address) if literal is not None else f"{host!r} resolves to {address}"
            raise TargetRefused(
                f"{shown}, a private, loopback, link-local or reserved address"
                " (KASSA_WEBHOOKS_ALLOW_PRIVATE_TARGETS=1 allows it)"
            )
    return addresses


class TargetPolicy:
    """The rule above, with the setting and the resolver given once (bootstrap)."""

    def __init__(self, *, allow_private: bool, resolver: Resolver = getaddrinfo_resolver) -> None:
        self.allow_private = allow_private
        self._resolver = resolver

    def check(self, url: str) -> str:
        """`url` if kassa may send to it (when it is set); else 422 `webhook_url_not_allowed`."""
        try:
            parts = parse(url)
            if not self.allow_private:
                vetted_addresses(parts, self._resolver)
        except TargetRefused as exc:
            raise _refused(str(exc)) from None
        return url

    def pin(self, url: str) -> PinnedTarget:
        """Where a delivery to `url` goes now: its host resolved and vetted again, the
        request sent to the first vetted address; TargetRefused if it no longer passes.
        With private targets allowed the URL is used as it is."""
        parts = parse(url)
        if self.allow_private:
            return PinnedTarget(url, None, None)
        address = vetted_addresses(parts, self._resolver)[0]
        shown = f"[{address}]" if address.version == 6 else str(address)
        netloc = f"{shown}:{_port(parts)}"
        host_header = parts.netloc.rsplit("@", 1)[-1]
        return PinnedTarget(
            urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, "")),
            host_header,
            parts.hostname if parts.scheme == "https" else None,
        )
