"""The Data Center application link in a real browser: Connect on the connector page, the
sandbox's consent page, back on the connector page connected; an integration on it syncs and
lists repositories; Deny is explained; a revoked refresh token shows the connector down with
invalid_grant and the fix on the integration page."""

import httpx
import pytest

from integrations import services
from integrations.providers.bitbucket_dc.provider import BitbucketDataCenterProvider
from sandbox import SandboxServer
from tests.sandbox.fixtures import dc_world_factory
from tests.ui.conftest import sign_in
from tests.ui.test_integration_walkthrough import make_user, nav

pytestmark = pytest.mark.django_db(transaction=True)

CLIENT_ID, CLIENT_SECRET = "lantern-ui", "ui-secret"


def _expect():
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect


@pytest.fixture
def dc_server():
    with SandboxServer(dc_world_factory(), kind="dc", webhook_timeout=5.0) as server:
        yield server


@pytest.fixture
def link_page(browser, live_server, settings):
    """A browser page that accepts the sandbox's private CA (only the browser: Lantern's own
    token exchange verifies it with the connector's CA)."""
    settings.BITBUCKET_DC_ENABLED = True
    settings.LANTERN_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    settings.LANTERN_PUBLIC_URL = live_server.url
    context = browser.new_context(
        base_url=live_server.url, viewport={"width": 1360, "height": 900}, ignore_https_errors=True
    )
    context.set_default_timeout(15_000)
    page = context.new_page()
    yield page
    context.close()


def test_connect_consent_sync_decline_and_a_revoked_refresh_token(link_page, dc_server):
    expect, page = _expect(), link_page
    connector = services.connector_create(
        name="dc-link",
        provider="bitbucket_dc",
        auth_kind="oauth_application_link",
        base_url=dc_server.url,
        secrets={"client_secret": CLIENT_SECRET},
        config={"client_id": CLIENT_ID},
        ca_pem=dc_server.ca_pem,
    )
    dc_server.world.credentials.dc.add_client(
        client_id=CLIENT_ID,
        secret=CLIENT_SECRET,
        redirect_uri=BitbucketDataCenterProvider.oauth_redirect_uri(connector),
    )
    messages = page.locator(".messages")
    sign_in(page, *make_user("ada", edit=True))

    # --- from the integrations to the connector page, Connect, consent, back connected -------
    nav(page, "Integrations").click()
    page.get_by_role("link", name="Connectors").click()
    page.get_by_role("link", name="dc-link").click()
    expect(page.locator("[data-connected]")).to_contain_text("Not yet")
    expect(page.locator("#redirect-uri")).to_have_text(
        f"{page.url.split('/integrations/')[0]}/org/bitbucket-dc/{connector.pk}/callback"
    )
    page.get_by_role("button", name="Connect", exact=True).click()
    expect(page.get_by_role("heading", name=f"Authorize {CLIENT_ID}")).to_be_visible()
    page.get_by_role("button", name="Allow").click()
    expect(messages).to_contain_text("Connector dc-link is connected to Bitbucket.")
    expect(page.locator("[data-health]")).to_have_text("Up")
    expect(page.locator("[data-connected]")).to_contain_text("Yes")

    # --- an integration on it syncs and lists the repositories --------------------------------
    integration = services.integration_create(connector=connector, name="dc-ui")
    page.goto(f"/integrations/{integration.pk}/")
    expect(page.locator("[data-connector-health]")).to_have_attribute("data-connector-health", "up")
    page.get_by_role("button", name="Sync now").click()
    expect(messages).to_contain_text("Sync of dc-ui queued")
    expect(page.locator("tbody tr")).to_have_count(24)

    # --- declined: Reconnect, Deny, the page says what happened and what to do ---------------
    page.get_by_role("link", name="dc-link").click()
    page.get_by_role("button", name="Reconnect").click()
    page.get_by_role("button", name="Deny").click()
    notice = page.locator("[data-authorisation-error=access_denied]")
    expect(notice).to_contain_text("The authorisation was declined in Bitbucket")
    expect(notice).to_contain_text("choose Allow")
    expect(page.locator("[data-health]")).to_have_text("Up")  # the tokens it holds still work

    # --- the refresh token revoked in Bitbucket: down, with invalid_grant and the fix --------
    context = httpx.create_ssl_context()
    context.load_verify_locations(cadata=dc_server.ca_pem)
    revoked = httpx.post(
        f"{dc_server.url}/_sandbox/dc/oauth/revoke", json={"client_id": CLIENT_ID}, verify=context
    )
    assert revoked.status_code == 200
    httpx.post(f"{dc_server.url}/_sandbox/dc/oauth/expire", verify=context)
    page.goto(f"/integrations/{integration.pk}/")
    page.get_by_role("button", name="Sync now").click()
    error = page.locator("[data-connector-error]")
    expect(error).to_contain_text("invalid_grant")
    expect(error).to_contain_text("reconnect the connector")
    expect(page.locator("[data-connector-health]")).to_have_attribute(
        "data-connector-health", "down"
    )

    # Reconnecting brings it back up.
    error.get_by_role("link", name="the connector's page").click()
    page.get_by_role("button", name="Reconnect").click()
    page.get_by_role("button", name="Allow").click()
    expect(messages).to_contain_text("Connector dc-link is connected to Bitbucket.")
    expect(page.locator("[data-health]")).to_have_text("Up")
