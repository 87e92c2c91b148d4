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
