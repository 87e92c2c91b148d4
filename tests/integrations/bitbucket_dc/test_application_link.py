"""The Data Center application link through Lantern's own pages, against the HTTPS sandbox over
real sockets: Connect, the sandbox's consent page (Allow or Deny), the callback, the tokens
stored encrypted, their refresh, and each refusal shown on the connector page with its fix."""

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from integrations.models import Connector
from integrations.providers.bitbucket_dc.provider import BitbucketDataCenterProvider
from tests.integrations.bitbucket_dc.conftest import make_connector, make_integration
from tests.integrations.engine.conftest import sync, sync_ok

pytestmark = pytest.mark.django_db

CLIENT_ID, CLIENT_SECRET = "lantern-link", "link-secret"


def user(username: str, *, edit: bool):
    account = get_user_model().objects.create_user(username, password="pw")
    if edit:
        account.user_permissions.add(
            Permission.objects.get(
                content_type__app_label="integrations", codename="edit_integration"
            )
        )
    return account


@pytest.fixture
def editor(client):
    client.force_login(user("ada", edit=True))
    return client


@pytest.fixture
def link(sandbox):
    """An application-link connector and its client registered on the sandbox."""
    server = sandbox.default
    connector = make_connector(
        server,
        name="dc-link",
        auth_kind="oauth_application_link",
        secrets={"client_secret": CLIENT_SECRET},
        config={"client_id": CLIENT_ID},
    )
    server.world.credentials.dc.add_client(
        client_id=CLIENT_ID,
        secret=CLIENT_SECRET,
        redirect_uri=BitbucketDataCenterProvider.oauth_redirect_uri(connector),
    )
    return server, connector


def ssl_context(server):
    context = httpx.create_ssl_context()
    context.load_verify_locations(cadata=server.ca_pem)
    return context


def trust(server) -> httpx.Client:
    return httpx.Client(verify=ssl_context(server))


def connect(client, connector) -> str:
    """Click Connect: the authorize URL Lantern sends the browser to."""
    response = client.post(reverse("integrations:connector-connect", args=[connector.pk]))
    assert response.status_code == 302
    return response["Location"]


def consent(server, authorize_url: str, decision: str) -> str:
    """The person on the sandbox's consent page: the callback URL it redirects to (path and
    query, as the browser would request it from Lantern)."""
    with trust(server) as http:
        page = http.get(authorize_url)
        assert page.status_code == 200 and "Allow" in page.text and "Deny" in page.text
        answer = http.post(authorize_url, data={"decision": decision})
    assert answer.status_code == 302
    location = urlsplit(answer.headers["Location"])
    assert location.netloc == "lantern.example"
    return f"{location.path}?{location.query}"


def page_of(client, connector) -> str:
    return client.get(reverse("integrations:connector-detail", args=[connector.pk])).text


def test_connect_consent_and_callback_store_tokens_and_mark_the_connector_up(editor, link):
    server, connector = link
    authorize = connect(editor, connector)
    query = parse_qs(urlsplit(authorize).query)
    assert authorize.startswith(f"{server.url}/rest/oauth2/latest/authorize?")
    assert query["code_challenge_method"] == ["S256"] and query["client_id"] == [CLIENT_ID]
    assert query["redirect_uri"] == [BitbucketDataCenterProvider.oauth_redirect_uri(connector)]
    callback = consent(server, authorize, "allow")
    assert callback.startswith(f"/org/bitbucket-dc/{connector.pk}/callback?")

    response = editor.get(callback, follow=True)
    assert response.redirect_chain[-1][0] == reverse(
        "integrations:connector-detail", args=[connector.pk]
    )
    assert "Connector dc-link is connected to Bitbucket." in response.text
    connector.refresh_from_db()
    assert connector.health == "up" and connector.last_success_at is not None
    tokens = connector.secrets
    assert tokens["access_token"] and tokens["refresh_token"]
    assert tokens["access_token"] not in connector.secrets_encrypted  # stored encrypted
    assert tokens["access_token"] not in response.text
    assert "Reconnect" in response.text

    # The tokens obtained this way sync, and are renewed before expiry (rotated and stored).
    server.world.credentials.dc.expire_access_tokens()
    run = sync_ok(make_integration(connector))
    assert run.discovered == 24
    connector.refresh_from_db()
    assert connector.secrets["refresh_token"] != tokens["refresh_token"]


def test_a_declined_consent_is_shown_with_what_to_do(editor, link):
    server, connector = link
    callback = consent(server, connect(editor, connector), "deny")
    assert "error=access_denied" in callback
    response = editor.get(callback, follow=True)
    assert response.redirect_chain[-1][0].endswith("?bitbucket_error=access_denied")
    assert "The authorisation was declined in Bitbucket" in response.text
    assert "choose Allow" in response.text
    connector.refresh_from_db()
    assert connector.health == "unknown" and "access_token" not in connector.secrets


def test_a_replayed_code_is_invalid_grant_on_the_connector_page(editor, link):
    server, connector = link
    first = consent(server, connect(editor, connector), "allow")
    editor.get(first)
    connector.refresh_from_db()
    tokens = connector.secrets
    # The same code again, with a freshly started (valid) state: Data Center refuses it.
    code = parse_qs(urlsplit(first).query)["code"][0]
    state = parse_qs(urlsplit(connect(editor, connector)).query)["state"][0]
    callback = reverse("connector-oauth-callback-dc", args=[connector.pk])
    response = editor.get(callback, {"code": code, "state": state}, follow=True)
    assert response.redirect_chain[-1][0].endswith("?bitbucket_error=invalid_grant")
    assert "refused the authorization code (invalid_grant)" in response.text
    assert "click Connect again" in response.text
    assert BitbucketDataCenterProvider.oauth_redirect_uri(connector) in response.text
    connector.refresh_from_db()
    assert connector.secrets == tokens and connector.health == "up"  # a replay changes nothing


def test_the_state_is_single_use_and_bound_to_the_session(editor, link):
    server, connector = link
    callback = consent(server, connect(editor, connector), "allow")
    other = Client()
    other.force_login(user("bob", edit=True))
    response = other.get(callback, follow=True)  # another session: no pending state there
    assert response.redirect_chain[-1][0].endswith("?bitbucket_error=invalid_state")
    assert "not started from this browser session" in response.text
    assert editor.get(callback).status_code == 302
    connector.refresh_from_db()
    assert connector.health == "up"
    replay = editor.get(callback, follow=True)  # used: it left the session
    assert replay.redirect_chain[-1][0].endswith("?bitbucket_error=invalid_state")


def test_an_expired_state_is_refused(editor, link):
    server, connector = link
    callback = consent(server, connect(editor, connector), "allow")
    session = editor.session
    session["connector_oauth"][str(connector.pk)]["expires_at"] = 0
    session.save()
    response = editor.get(callback, follow=True)
    assert "took too long and expired" in response.text
    connector.refresh_from_db()
    assert "access_token" not in connector.secrets


def test_a_revoked_refresh_token_marks_the_connector_down_with_the_fix(editor, link):
    server, connector = link
    editor.get(consent(server, connect(editor, connector), "allow"))
    integration = make_integration(connector)
    sync_ok(integration)
    revoked = httpx.post(
        f"{server.url}/_sandbox/dc/oauth/revoke",
        json={"client_id": CLIENT_ID},
        verify=ssl_context(server),
    )
    assert revoked.json()["revoked"] >= 2
    server.world.credentials.dc.expire_access_tokens()
    run = sync(integration)
    assert run.state == "failed" and "invalid_grant" in run.error
    connector.refresh_from_db()
    assert connector.health == "down" and "reconnect the connector" in connector.last_error
    page = page_of(editor, connector)
    assert "invalid_grant" in page and "Connect on its page" in page
    detail = editor.get(reverse("integrations:detail", args=[integration.pk])).text
    assert "Connector down" in detail and "invalid_grant" in detail


def test_only_editors_may_connect_or_complete(client, link):
    server, connector = link
    client.force_login(user("reader", edit=False))
    assert (
        client.post(reverse("integrations:connector-connect", args=[connector.pk])).status_code
        == 403
    )
    callback = reverse("connector-oauth-callback-dc", args=[connector.pk])
    assert client.get(callback, {"code": "x", "state": "y"}).status_code == 403
    page = page_of(client, connector)
    assert "Connect</button>" not in page and "Test connection" not in page


def test_the_callback_route_is_the_redirect_uri_the_provider_names(link):
    _, connector = link
    uri = BitbucketDataCenterProvider.oauth_redirect_uri(connector)
    assert urlsplit(uri).path == reverse("connector-oauth-callback-dc", args=[connector.pk])


def test_a_personal_access_token_connector_offers_no_connect(editor, sandbox):
    connector = make_connector(sandbox.default)
    page = page_of(editor, connector)
    assert "Test connection" in page and "Connect</button>" not in page
    response = editor.post(reverse("integrations:connector-connect", args=[connector.pk]))
    assert response.status_code == 302
    assert "needs no browser authorisation" in page_of(editor, connector)
    assert Connector.objects.get(pk=connector.pk).health == "unknown"
