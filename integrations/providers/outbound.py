"""The outbound-address guard, shared by every provider.

Before a request, the host is resolved and every address checked against loopback, private,
link-local (cloud metadata), CGNAT, unspecified, multicast and reserved ranges, IPv4 and IPv6.
IPv6 forms that carry an IPv4 address are judged by that address too: IPv4-mapped
(``::ffff:0:0/96``) and NAT64 (``64:ff9b::/96``) by it alone, 6to4 (``2002::/16``) and Teredo
(``2001::/32``) refused when it is internal; the rest of ``::/8`` (IPv4-compatible ``::/96``
among it) is refused outright. Only ``LANTERN_OUTBOUND_ALLOWLIST`` — exact host names or CIDRs —
relaxes it (tests, the sandbox, on-premise installs).

Requests may leave through a proxy: the connector's own ``proxy_url``, else ``HTTPS_PROXY`` /
``HTTP_PROXY`` unless ``NO_PROXY`` names the host (:func:`proxy_for`). The guard then applies to
the target each request is for, checked before anything is sent; the proxy itself is an address
the administrator chose and is not refused.
"""

import ipaddress
import socket
import ssl
import urllib.request
from urllib.parse import urlsplit

import httpcore
import httpx
from django.conf import settings

from integrations.providers.base import ProviderError

_FORBIDDEN_NETWORKS = [
    ipaddress.ip_network(cidr)
    for cidr in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "255.255.255.255/32",
        "::/8",  # unspecified, loopback, IPv4-compatible (::/96), SIIT and the rest reserved
        "64:ff9b:1::/48",  # local-use NAT64 (RFC 8215): a network's own translator
        "100::/64",  # discard-only
        "2001:db8::/32",  # documentation
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",  # deprecated site-local
        "ff00::/8",
    )
]
_IPV4_MAPPED = ipaddress.ip_network("::ffff:0:0/96")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class OutboundAddressError(ProviderError):
    """A URL whose host resolves to an address Lantern must not call."""


def _allowlist() -> tuple[set[str], list]:
    hosts, networks = set(), []
    for item in settings.LANTERN_OUTBOUND_ALLOWLIST:
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            hosts.add(item.lower())
    return hosts, networks


def _in_forbidden_network(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return any(ip in network for network in _FORBIDDEN_NETWORKS if ip.version == network.version)


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries: mapped (last 32 bits), NAT64 (last 32 bits),
    6to4 (bits 16-48), Teredo (its server and its de-obfuscated client)."""
    if ip in _IPV4_MAPPED:
        return [ip.ipv4_mapped]
    if ip in _NAT64:
        return [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)]
    if ip.sixtofour is not None:
        return [ip.sixtofour]
    if ip.teredo is not None:
        return list(ip.teredo)
    return []


def address_forbidden(address: str) -> bool:
    """Whether Lantern must not connect to ``address`` (an IPv4 or IPv6 literal).

    A packet to a mapped or NAT64 address goes to the IPv4 address inside it, so that address
    alone decides; a 6to4 or Teredo address is refused when the IPv4 address it tunnels through
    is internal, and otherwise judged as IPv6."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = embedded_ipv4(ip)
        if any(_in_forbidden_network(v4) for v4 in embedded):
            return True
        if ip in _IPV4_MAPPED or ip in _NAT64:
            return False
    return _in_forbidden_network(ip)


def resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise OutboundAddressError(f"Cannot resolve {host}: {exc.strerror}") from exc
    return sorted({info[4][0] for info in infos})


def outbound_check(url: str) -> list[str]:
    """Resolve the URL's host and refuse it when any address is forbidden.

    Returns the checked addresses; the caller connects to one of these, never resolving again.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OutboundAddressError(f"Not an http(s) URL: {url}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return host_check(parts.hostname, port)


def host_check(host: str, port: int) -> list[str]:
    """The addresses of ``host`` after checking every one of them (see :func:`outbound_check`)."""
    host = host.lower().strip("[]")
    allowed_hosts, allowed_networks = _allowlist()
    addresses = resolve(host, port)
    if host in allowed_hosts:
        return addresses
    for address in addresses:
        ip = ipaddress.ip_address(address)
        if any(ip in network for network in allowed_networks if ip.version == network.version):
            continue
        if address_forbidden(address):
            raise OutboundAddressError(
                f"Refusing to connect to {host}: it resolves to {address}, an internal address. "
                "Add the host to LANTERN_OUTBOUND_ALLOWLIST if it is meant to be reachable."
            )
    return addresses


class GuardedNetworkBackend(httpcore.SyncBackend):
    """Every new connection resolves its host once, checks every address, and connects to a
    checked address — so DNS cannot be rebound between the check and the connection, and each
    redirect hop is checked as it connects. TLS still verifies the original host name."""

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        addresses = host_check(host, port)
        last_error: Exception | None = None
        for address in addresses:
            try:
                return super().connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore.ConnectError as exc:
                last_error = exc
        raise last_error or httpcore.ConnectError(f"Cannot connect to {host}")


def guarded_transport(ssl_context: ssl.SSLContext) -> httpx.HTTPTransport:
    """An httpx transport whose connections go through :class:`GuardedNetworkBackend`."""
    transport = httpx.HTTPTransport(verify=ssl_context)
    # httpx exposes no hook for the network backend; its pool is rebuilt with ours.
    transport._pool = httpcore.ConnectionPool(  # noqa: SLF001
        ssl_context=ssl_context, network_backend=GuardedNetworkBackend()
    )
    return transport


# -- proxies -----------------------------------------------------------------------------------


def _no_proxy_networks(no_proxy: str) -> list:
    networks = []
    for item in no_proxy.replace(" ", "").split(","):
        try:
            networks.append(ipaddress.ip_network(item.strip("[]"), strict=False))
        except ValueError:
            continue
    return networks


def proxy_bypassed(host: str, port: int | None = None) -> bool:
    """Whether ``NO_PROXY`` (or ``no_proxy``) names ``host``: exact names, domain suffixes
    (``example.com`` and ``.example.com`` cover its subdomains), ``*``, ``host:port``, and IP
    addresses or CIDRs, as curl reads it."""
    proxies = urllib.request.getproxies_environment()
    no_proxy = proxies.get("no", "")
    if not no_proxy:
        return False
    host = host.strip("[]")
    if urllib.request.proxy_bypass_environment(f"{host}:{port}" if port else host, proxies):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    networks = _no_proxy_networks(no_proxy)
    return any(ip in network for network in networks if ip.version == network.version)


def proxy_for(url: str | httpx.URL, connector_proxy: str = "") -> str:
    """The proxy a request to ``url`` goes through, ``""`` for a direct connection: the
    connector's own proxy for every request, else the environment's ``HTTPS_PROXY`` /
    ``HTTP_PROXY`` (by the target's scheme; ``ALL_PROXY`` after them) unless ``NO_PROXY`` names
    the host."""
    if connector_proxy:
        return connector_proxy
    url = httpx.URL(str(url))
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(url.scheme) or proxies.get("all") or ""
    if not proxy or proxy_bypassed(url.host, url.port):
        return ""
    return proxy


def proxy_url_validate(proxy_url: str) -> str | None:
    """Why ``proxy_url`` cannot be a connector's proxy, or None. The reason never quotes the
    URL (it may carry a password)."""
    if not proxy_url:
        return None
    try:
        url = httpx.URL(proxy_url)
    except (httpx.InvalidURL, TypeError):
        return "is not a URL"
    if url.scheme not in ("http", "https"):
        return "must be an http:// or https:// proxy URL (host and port)"
    if not url.host:
        return "names no proxy host"
    if url.path not in ("", "/") or url.query:
        return "must be only scheme, optional user:password@, host and port"
    return None


def proxy_label(proxy_url: str) -> str:
    """A proxy as ``host:port``: what messages, logs and the probe say, never its credentials."""
    if not proxy_url:
        return ""
    url = httpx.URL(proxy_url)
    port = url.port or (443 if url.scheme == "https" else 80)
    return f"{url.host}:{port}"


def proxied_target_check(host: str, port: int) -> None:
    """The guard for a request sent through a proxy: the target is checked like a direct
    connection's, except that an allowlisted host name passes without being resolved here
    (where only the proxy can resolve names, the Bitbucket hosts are listed in the allowlist)."""
    allowed_hosts, _ = _allowlist()
    if host.lower().strip("[]") in allowed_hosts:
        return
    host_check(host, port)


class RoutingTransport(httpx.BaseTransport):
    """Each request direct (through :class:`GuardedNetworkBackend`) or through its proxy, chosen
    per request by :func:`proxy_for`, so every redirect hop is routed and checked on its own.

    A proxied request's target is checked before anything is sent, the proxy included; an
    ``https://`` target is reached by CONNECT and its TLS verified end to end with the
    connector's trust (``ssl_context``)."""

    def __init__(self, ssl_context: ssl.SSLContext, *, proxy_url: str = ""):
        self._ssl_context = ssl_context
        self._proxy_url = proxy_url
        self._direct: httpx.HTTPTransport | None = None
        self._proxied: dict[str, httpx.HTTPTransport] = {}

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        proxy = proxy_for(request.url, self._proxy_url)
        if not proxy:
            if self._direct is None:
                self._direct = guarded_transport(self._ssl_context)
            return self._direct.handle_request(request)
        port = request.url.port or (443 if request.url.scheme == "https" else 80)
        proxied_target_check(request.url.host, port)
        transport = self._proxied.get(proxy)
        if transport is None:
            transport = httpx.HTTPTransport(verify=self._ssl_context, proxy=httpx.Proxy(proxy))
            self._proxied[proxy] = transport
        return transport.handle_request(request)

    def close(self) -> None:
        for transport in [self._direct, *self._proxied.values()]:
            if transport is not None:
                transport.close()
