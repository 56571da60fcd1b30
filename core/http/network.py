"""Which hosts requests may reach: loopback, link-local and private networks only on request.

A manifest or a connection could point a connector at ``169.254.169.254`` (a cloud metadata
service) or at a service on the host's own network. Requests to such addresses are refused
unless the connection was created with ``--allow-private-network`` (stored on the connection
as ``allow_private_network``; sandbox connections made by ``splice demo`` carry it).

Two checks, both before anything is sent: :func:`refusal` reads the host itself (IP literals
in any form ``inet_aton`` accepts, such as ``2852039166`` or ``0xa9.0xfe.0xa9.0xfe``, IPv6 and
IPv4-mapped IPv6, and names such as ``localhost`` or ``*.internal``);
:class:`HostGuard` resolves each host name before its first request and refuses it when any
address it resolves to is in such a range. (A name whose DNS answer changes between that
lookup and the connection is not caught: a firewall or egress proxy is the complete answer.)
"""

from __future__ import annotations

import functools
import ipaddress
import socket

import httpx

from ..errors import ConfigError, RequestError

OPTION = "allow_private_network"
_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback",
          "metadata", "metadata.google.internal", "instance-data")
_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain", ".home.arpa", ".lan")
_CGNAT = ipaddress.ip_network("100.64.0.0/10")


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = host.strip("[]")
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        pass
    try:  # legacy IPv4 forms that resolvers accept: 2852039166, 0251.0376.0251.0376, 127.1
        return ipaddress.IPv4Address(socket.inet_aton(text))
    except (OSError, ValueError):
        return None


def address_kind(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """``loopback``, ``link-local``, ``private`` ... for a non-public address, else None."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_unspecified:
        return "unspecified"
    if address.is_multicast:
        return "multicast"
    if address.is_private or (isinstance(address, ipaddress.IPv4Address) and address in _CGNAT):
        return "private"
    if address.is_reserved:
        return "reserved"
    return None


@functools.lru_cache(maxsize=256)
def refusal(host: str | None) -> str | None:
    """Why ``host`` (as written in a URL) is not a public host, or None when it is."""
    if not host:
        return None
    name = host.lower().rstrip(".")
    address = _address(name)
    if address is not None:
        kind = address_kind(address)
        return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} address" if kind else None
    if name in _NAMES or name.endswith(_SUFFIXES):
        return "a local or internal host name"
    return None


def check_url(url: str, *, allowed: bool, what: str) -> None:
    """Refuse ``url`` (a base or token URL) on a non-public host unless ``allowed``."""
    if allowed:
        return
    try:
        host = httpx.URL(url).host
    except httpx.InvalidURL:
        raise ConfigError(f"{what} is not a valid URL") from None
    reason = refusal(host)
    if reason:
        raise ConfigError(f"{what} points at {reason} ({host}); refused",
                           hint="for a sandbox or a service on your own network, create the "
                                "connection with --allow-private-network")


class HostGuard:
    """An httpx request hook (it sees the API's requests and the OAuth refreshes an auth flow
    sends through the same client) refusing hosts that are, or resolve to, non-public
    addresses. Each host is resolved once per client."""

    def __init__(self) -> None:
        self._checked: dict[str, str | None] = {}

    def reason(self, host: str, port: int) -> str | None:
        if host not in self._checked:
            reason = refusal(host)
            if reason is None and _address(host) is None:
                try:
                    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
                except (OSError, UnicodeError):
                    infos = []  # the request itself will fail to connect and say so
                for info in infos:
                    kind = address_kind(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]))
                    if kind:
                        reason = f"a name that resolves to a {kind} address"
                        break
            self._checked[host] = reason
        return self._checked[host]

    def __call__(self, request: httpx.Request) -> None:
        url = request.url
        reason = self.reason(url.host, url.port or (443 if url.scheme == "https" else 80))
        if reason:
            raise RequestError(f"refusing a request to {reason} ({url.host})",
                               hint="for a sandbox or a service on your own network, create "
                                    "the connection with --allow-private-network")


def guard_client(client: httpx.Client) -> None:
    """Add a :class:`HostGuard` to ``client``'s request hooks."""
    hooks = client.event_hooks
    client.event_hooks = {**hooks, "request": [*hooks.get("request", []), HostGuard()]}
