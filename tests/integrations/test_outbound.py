"""The outbound-address guard: internal ranges refused, allowlist exact, redirects re-checked."""

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from integrations.providers.http import ProviderHttp, RetryPolicy
from integrations.providers.outbound import OutboundAddressError, outbound_check


def fake_resolution(monkeypatch, *addresses: str) -> None:
    def getaddrinfo(host, port, *args, **kwargs):
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in addresses
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.9.10",
        "10.1.2.3",
        "172.16.0.1",
        "172.31.255.254",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "100.127.255.254",
        "0.0.0.0",  # noqa: S104
        "224.0.0.1",
        "::1",
        "::",
        "fc00::1",
        "fd12:3456::1",
        "fe80::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
    ],
)
def test_internal_addresses_are_refused(monkeypatch, settings, address):
    settings.LANTERN_OUTBOUND_ALLOWLIST = []
    fake_resolution(monkeypatch, address)
    with pytest.raises(OutboundAddressError, match="internal address"):
        outbound_check("https://bitbucket.example.com/rest")


@pytest.mark.parametrize("address", ["104.192.141.1", "2406:da00:ff00::1", "8.8.8.8"])
def test_public_addresses_pass(monkeypatch, settings, address):
    settings.LANTERN_OUTBOUND_ALLOWLIST = []
    fake_resolution(monkeypatch, address)
    assert outbound_check("https://api.bitbucket.org/2.0") == [address]


def test_one_private_address_among_public_ones_is_refused(monkeypatch, settings):
    settings.LANTERN_OUTBOUND_ALLOWLIST = []
    fake_resolution(monkeypatch, "104.192.141.1", "10.0.0.7", "8.8.8.8")
    with pytest.raises(OutboundAddressError, match="10.0.0.7"):
        outbound_check("https://mixed.example.com/")


def test_the_allowlist_admits_exactly_what_it_names(monkeypatch, settings):
    settings.LANTERN_OUTBOUND_ALLOWLIST = ["git.internal.example", "10.20.0.0/16"]
    fake_resolution(monkeypatch, "10.99.0.1")
    assert outbound_check("https://git.internal.example/") == ["10.99.0.1"]
    with pytest.raises(OutboundAddressError):
        outbound_check("https://other.internal.example/")
    fake_resolution(monkeypatch, "10.20.3.4")
    assert outbound_check("https://any.example/") == ["10.20.3.4"]
    fake_resolution(monkeypatch, "10.21.0.1")
    with pytest.raises(OutboundAddressError):
        outbound_check("https://any.example/")


def test_non_http_urls_are_refused(settings):
    with pytest.raises(OutboundAddressError, match="Not an http"):
        outbound_check("file:///etc/passwd")


@pytest.fixture
def redirecting_server():
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_redirect_to_a_forbidden_address_is_refused_at_connect(settings, redirecting_server):
    settings.LANTERN_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    http = ProviderHttp(base_url=redirecting_server, retry=RetryPolicy(max_tries=1))
    with pytest.raises(OutboundAddressError, match="169.254.169.254"):
        http.request("GET", "/anything", auth=False)


def test_a_request_to_loopback_without_allowlist_is_refused(settings, redirecting_server):
    settings.LANTERN_OUTBOUND_ALLOWLIST = []
    http = ProviderHttp(base_url=redirecting_server)
    with pytest.raises(OutboundAddressError):
        http.request("GET", "/anything", auth=False)


# -- IPv6 forms that carry an IPv4 address ---------------------------------------------------------

V6_INTERNAL_FORMS = [
    "::127.0.0.1",  # IPv4-compatible (::/96)
    "::10.0.0.1",
    "::8.8.8.8",  # IPv4-compatible is deprecated: refused whatever it carries
    "::1:2:3",  # the rest of ::/8
    "::ffff:0:127.0.0.1",  # SIIT (::ffff:0:0:0/96)
    "::ffff:192.168.0.1",  # IPv4-mapped
    "64:ff9b::127.0.0.1",  # NAT64
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "64:ff9b:1::10.0.0.1",  # local-use NAT64
    "2002:7f00:1::1",  # 6to4 through 127.0.0.1
    "2002:a9fe:a9fe::1",  # 6to4 through 169.254.169.254
    "2002:c0a8:101:1::5",  # 6to4 through 192.168.1.1
    "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo whose client is 10.0.0.1
    "fec0::1",
    "2001:db8::1",
]


class ConnectRecorder:
    """Stands in for every way a socket could be connected: records the address and fails,
    so a test proves no connection was even attempted."""

    def __init__(self, monkeypatch):
        self.attempts: list = []
        recorder = self

        def connect(sock, address):
            recorder.attempts.append(address)
            raise OSError("connection attempted in a test of the guard")

        def create_connection(address, *args, **kwargs):
            recorder.attempts.append(address)
            raise OSError("connection attempted in a test of the guard")

        monkeypatch.setattr(socket.socket, "connect", connect)
        monkeypatch.setattr(socket.socket, "connect_ex", connect)
        monkeypatch.setattr(socket, "create_connection", create_connection)


@pytest.mark.parametrize("address", V6_INTERNAL_FORMS)
def test_ipv6_forms_of_internal_addresses_are_refused_as_url_literals(
    monkeypatch, settings, address
):
    settings.LANTERN_OUTBOUND_ALLOWLIST = ["127.0.0.1", "10.0.0.0/8"]
    recorder = ConnectRecorder(monkeypatch)
    url = f"http://[{address}]/"
    with pytest.raises(OutboundAddressError, match="internal address"):
        outbound_check(url)
    http = ProviderHttp(base_url=url, retry=RetryPolicy(max_tries=1))
    with pytest.raises(OutboundAddressError, match="internal address"):
        http.request("GET", "/rest", auth=False)
    assert recorder.attempts == []


@pytest.mark.parametrize("address", V6_INTERNAL_FORMS)
def test_ipv6_forms_of_internal_addresses_are_refused_after_resolution(
    monkeypatch, settings, address
):
    settings.LANTERN_OUTBOUND_ALLOWLIST = []
    fake_resolution(monkeypatch, address)
    recorder = ConnectRecorder(monkeypatch)
    http = ProviderHttp(base_url="https://bitbucket.example.com", retry=RetryPolicy(max_tries=1))
    with pytest.raises(OutboundAddressError, match="internal address"):
        http.request("GET", "/rest", auth=False)
    assert recorder.attempts == []


@pytest.mark.parametrize(
    "address",
    [
        "::ffff:104.192.141.1",  # mapped public IPv4
        "64:ff9b::104.192.141.1",  # NAT64 of a public IPv4 (an IPv6-only network's DNS64)
        "2002:68c0:8d01::1",  # 6to4 through a public IPv4
        "2001:0:4136:e378:8000:63bf:97bf:72fe",  # Teredo whose client is public
    ],
)
def test_ipv6_forms_of_public_addresses_pass(monkeypatch, settings, address):
    settings.LANTERN_OUTBOUND_ALLOWLIST = []
    fake_resolution(monkeypatch, address)
    assert outbound_check("https://api.bitbucket.org/2.0") == [address]
