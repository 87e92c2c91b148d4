"""Proxies: every outbound client honours HTTPS_PROXY / HTTP_PROXY / NO_PROXY and the
connector's own proxy URL, over real sockets through a test proxy (forwarding for http://,
CONNECT for https:// with the private CA verified end to end), with the outbound guard on the
target and the proxy's credentials never shown."""

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from integrations import services
from integrations.choices import SyncState
from integrations.models import Connector
from integrations.providers.bitbucket_cloud import client as cloud_client
from integrations.providers.bitbucket_dc import client as dc_client
from integrations.providers.http import ConnectorNetwork, ProviderHttp, RetryPolicy
from integrations.providers.outbound import OutboundAddressError, proxy_for
from sandbox import SandboxServer
from tests.sandbox.fixtures import (
    DC_TOKEN,
    SANDBOX_TOKEN,
    cloud_world_factory,
    dc_world_factory,
)
from tests.support.proxy import TestProxy

PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
PROXY_PASSWORD = "pr0xy-s3cret-pw"


@pytest.fixture(autouse=True)
def network_settings(settings, monkeypatch):
    """Loopback allowed, Data Center on, fast retries, no proxy in the environment."""
    settings.LANTERN_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    settings.BITBUCKET_DC_ENABLED = True
    for module in (cloud_client, dc_client):
        monkeypatch.setattr(
            module, "retry_policy", lambda: RetryPolicy(base_delay=0.002, max_delay=0.01)
        )
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.fixture
def proxy():
    with TestProxy() as server:
        yield server


@pytest.fixture
def cloud():
    with SandboxServer(cloud_world_factory(repos=6), kind="cloud") as server:
        yield server


@pytest.fixture
def dc():
    with SandboxServer(dc_world_factory(repos=6), kind="dc") as server:
        yield server


def cloud_connector(server, **values) -> Connector:
    return services.connector_create(
        name="cloud",
        provider="bitbucket_cloud",
        auth_kind="workspace_access_token",
        base_url=server.api_url,
        secrets={"token": SANDBOX_TOKEN},
        **values,
    )


def dc_connector(server, **values) -> Connector:
    return services.connector_create(
        name="dc",
        provider="bitbucket_dc",
        auth_kind="personal_access_token",
        base_url=server.url,
        secrets={"token": DC_TOKEN},
        ca_pem=server.ca_pem,
        **values,
    )


def sync_ok(connector: Connector, target: dict):
    integration = services.integration_create(
        connector=connector, name=connector.name, target=target, auto_import=True
    )
    run = services.integration_sync(integration_id=integration.pk, trigger="manual")
    assert run.state == SyncState.SUCCEEDED, (run.state, run.error)
    return run


def api_requests(server) -> list:
    return [e for e in server.api.log.entries() if e.path.startswith(("/2.0/", "/rest/api/"))]


def origin(server) -> str:
    return server.url.split("://", 1)[1]


@pytest.mark.django_db
def test_a_cloud_probe_and_sync_go_through_the_environment_proxy(monkeypatch, proxy, cloud):
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    connector = cloud_connector(cloud)
    result = services.connector_test(connector=connector, target={"workspace": "acme"})
    assert result.ok, result.message
    assert result.details["route"] == f"proxy {proxy.address}"
    sync_ok(connector, {"workspace": "acme"})
    forwarded = [target for method, target in proxy.targets]
    assert len(forwarded) == len(api_requests(cloud)) > 5
    assert all(target.startswith(f"http://{origin(cloud)}/2.0/") for target in forwarded)


@pytest.mark.django_db
def test_a_data_center_probe_and_sync_tunnel_https_through_connect_with_the_private_ca(
    monkeypatch, proxy, dc
):
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    connector = dc_connector(dc)
    result = services.connector_test(connector=connector, target={"projects": []})
    assert result.ok, result.message
    assert result.details["route"] == f"proxy {proxy.address}"
    sync_ok(connector, {"projects": []})
    assert proxy.targets  # one CONNECT per pooled connection, never a plain forward
    assert {target for target in proxy.targets} == {("CONNECT", origin(dc))}
    assert len(api_requests(dc)) > 5


@pytest.mark.django_db
def test_a_tunnel_to_a_server_the_private_ca_did_not_sign_is_refused(monkeypatch, proxy, dc):
    """TLS is verified end to end, through the tunnel: without the CA the sync stops."""
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    other = SandboxServer(dc_world_factory(repos=1), kind="dc").start()
    try:
        connector = dc_connector(dc)
        connector.ca_pem = other.ca_pem  # a CA, but not the one that signed this server
        connector.save()
        result = services.connector_test(connector=connector, target={"projects": []})
    finally:
        other.stop()
    assert not result.ok
    assert "could not be verified" in result.message
    assert ("CONNECT", origin(dc)) in proxy.targets


@pytest.mark.django_db
def test_no_proxy_sends_the_host_direct_and_the_proxy_sees_nothing(monkeypatch, proxy, cloud):
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.0/8")
    connector = cloud_connector(cloud)
    result = services.connector_test(connector=connector, target={"workspace": "acme"})
    assert result.ok, result.message
    assert result.details["route"] == "direct"
    sync_ok(connector, {"workspace": "acme"})
    assert proxy.targets == [] and proxy.connections == 0
    assert len(api_requests(cloud)) > 5


@pytest.mark.parametrize(
    ("no_proxy", "host", "bypassed"),
    [
        ("example.com", "api.example.com", True),
        (".example.com", "api.example.com", True),
        ("example.com", "example.com", True),
        ("example.com", "badexample.com", False),
        ("*", "bitbucket.org", True),
        ("10.0.0.0/8", "10.2.3.4", True),
        ("10.0.0.0/8", "11.2.3.4", False),
        ("git.example:8443", "git.example:8443", True),
    ],
)
def test_no_proxy_reads_names_suffixes_wildcards_and_cidrs(monkeypatch, no_proxy, host, bypassed):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", no_proxy)
    expected = "" if bypassed else "http://proxy.example:3128"
    assert proxy_for(f"https://{host}/rest", "") == expected


@pytest.mark.django_db
def test_the_connectors_own_proxy_beats_the_environment(monkeypatch, proxy, cloud):
    with TestProxy(credentials=("lantern", PROXY_PASSWORD)) as own:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        connector = cloud_connector(cloud, proxy_url=own.url)
        result = services.connector_test(connector=connector, target={"workspace": "acme"})
        assert result.ok, result.message
        assert result.details["route"] == f"proxy {own.address}"
        assert PROXY_PASSWORD not in str(result.details)
        sync_ok(connector, {"workspace": "acme"})
        assert len(own.targets) == len(api_requests(cloud)) > 5
    assert proxy.targets == [] and proxy.connections == 0


@pytest.mark.django_db
def test_the_connectors_proxy_is_stored_encrypted(cloud):
    connector = cloud_connector(cloud, proxy_url=f"http://lantern:{PROXY_PASSWORD}@proxy:3128")
    stored = Connector.objects.values_list("proxy_url_encrypted", flat=True).get()
    assert PROXY_PASSWORD not in stored and "proxy:3128" not in stored
    assert Connector.objects.get().proxy_url == connector.proxy_url
    assert connector.proxy_display == "http://lantern:***@proxy:3128"


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["cloud", "dc"])
def test_refused_proxy_credentials_never_appear_in_messages_or_logs(caplog, request, kind):
    server = request.getfixturevalue(kind)
    wrong = "wr0ng-proxy-pw"
    caplog.set_level(logging.DEBUG)
    with TestProxy(credentials=("lantern", PROXY_PASSWORD)) as guarded:
        url = f"http://lantern:{wrong}@{guarded.address}"
        make = cloud_connector if kind == "cloud" else dc_connector
        connector = make(server, proxy_url=url)
        target = {"workspace": "acme"} if kind == "cloud" else {"projects": []}
        result = services.connector_test(connector=connector, target=target)
        assert guarded.targets  # the proxy was asked, and refused
    assert not result.ok
    assert f"The proxy {guarded.address} refused the request (HTTP 407" in result.message
    connector.refresh_from_db()
    for text in (result.message, str(result.details), caplog.text, connector.last_error):
        assert wrong not in text and "lantern:" not in text
    assert api_requests(server) == []


@pytest.mark.django_db
def test_https_through_a_proxy_that_wants_credentials_works_with_them(dc):
    with TestProxy(credentials=("lantern", PROXY_PASSWORD)) as guarded:
        connector = dc_connector(dc, proxy_url=guarded.url)
        result = services.connector_test(connector=connector, target={"projects": []})
        assert result.ok, result.message
        assert guarded.targets[-1] == ("CONNECT", origin(dc))


@pytest.mark.parametrize(
    "url",
    [
        "https://169.254.169.254/latest/meta-data/",
        "http://10.0.0.5/rest",
        "http://[::ffff:10.0.0.5]/rest",
        "http://[64:ff9b::a9fe:a9fe]/rest",
    ],
)
@pytest.mark.parametrize("source", ["environment", "connector"])
def test_a_target_the_guard_refuses_is_refused_through_a_proxy_before_any_connection(
    monkeypatch, proxy, url, source
):
    if source == "environment":
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        network = ConnectorNetwork()
    else:
        network = ConnectorNetwork(proxy_url=proxy.url)
    http = ProviderHttp(base_url=url, network=network, retry=RetryPolicy(max_tries=1))
    with pytest.raises(OutboundAddressError, match="internal address"):
        http.request("GET", url, auth=False)
    assert proxy.targets == [] and proxy.connections == 0


@pytest.fixture
def redirect_to_internal():
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(302)
            self.send_header("Location", "http://10.1.2.3/internal")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_each_redirect_hop_through_a_proxy_is_checked_before_it_is_sent(
    proxy, redirect_to_internal
):
    http = ProviderHttp(
        base_url=redirect_to_internal,
        network=ConnectorNetwork(proxy_url=proxy.url),
        retry=RetryPolicy(max_tries=1),
    )
    with pytest.raises(OutboundAddressError, match="10.1.2.3"):
        http.request("GET", "/start", auth=False)
    assert proxy.targets == [("GET", f"{redirect_to_internal}/start")]


@pytest.mark.django_db
def test_check_integration_says_which_proxy_was_used_never_its_credentials(cloud):
    from io import StringIO

    from django.core.management import call_command

    with TestProxy(credentials=("lantern", PROXY_PASSWORD)) as own:
        connector = cloud_connector(cloud, proxy_url=own.url)
        services.integration_create(connector=connector, name="acme", target={"workspace": "acme"})
        out = StringIO()
        call_command("check_integration", "acme", stdout=out)
    text = out.getvalue()
    assert f"route: proxy {own.address}" in text
    assert PROXY_PASSWORD not in text and "lantern:" not in text
