"""Sign in with Bitbucket against the Cloud sandbox, over real sockets.

The Django test client plays the browser on Lantern's side; httpx plays it on Bitbucket's
(the sandbox's authorize endpoint approves its configured user without a page).
"""

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from allauth.socialaccount.models import SocialAccount
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from tests.sandbox.fixtures import cloud_world_factory, make_cloud_sandbox  # noqa: F401

CLIENT_ID = "lantern-login"
CLIENT_SECRET = "lantern-login-secret"  # noqa: S105 (a sandbox consumer)
CALLBACK = "http://testserver/accounts/bitbucket_oauth2/login/callback/"


@pytest.fixture
def bitbucket(make_cloud_sandbox, settings, db):  # noqa: F811
    """A Cloud sandbox with Lantern's OAuth consumer, and Lantern configured to sign in there."""
    world = cloud_world_factory(token=None, repos=2, prs_per_repo=0, commits_per_repo=1)
    world.credentials.add_oauth_consumer(
        client_id=CLIENT_ID,
        secret=CLIENT_SECRET,
        callback_url=CALLBACK,
        scopes=["account", "email"],
    )
    server = make_cloud_sandbox(world)
    settings.BITBUCKET_OAUTH_URL = server.url
    settings.BITBUCKET_API_URL = server.api_url
    settings.SOCIALACCOUNT_PROVIDERS = {
        "bitbucket_oauth2": {"APPS": [{"client_id": CLIENT_ID, "secret": CLIENT_SECRET}]}
    }
    settings.ACCOUNT_ALLOW_REGISTRATION = True  # new Bitbucket users get an account
    return server


def _approving_user(server):
    credentials = server.world.credentials
    return server.world.account(credentials._default_user())


def _sign_in(client: Client, server) -> httpx.Response:
    """POST the provider login URL, let the sandbox answer the authorize redirect, and take
    its callback back to Lantern; the response of Lantern's callback view."""
    start = client.post(reverse("bitbucket_oauth2_login"))
    assert start.status_code == 302
    authorize = start.headers["Location"]
    assert authorize.startswith(f"{server.url}/site/oauth2/authorize?")
    assert parse_qs(urlsplit(authorize).query)["client_id"] == [CLIENT_ID]
    answer = httpx.get(authorize, follow_redirects=False)
    assert answer.status_code == 302
    callback = urlsplit(answer.headers["location"])
    assert f"{callback.scheme}://{callback.netloc}{callback.path}" == CALLBACK
    return client.get(f"{callback.path}?{callback.query}")


def test_login_page_offers_bitbucket_only_when_configured(client, settings, db):
    settings.SOCIALACCOUNT_PROVIDERS = {}
    assert "Sign in with Bitbucket" not in client.get(reverse("account_login")).content.decode()
    settings.SOCIALACCOUNT_PROVIDERS = {
        "bitbucket_oauth2": {"APPS": [{"client_id": CLIENT_ID, "secret": CLIENT_SECRET}]}
    }
    page = client.get(reverse("account_login")).content.decode()
    assert "Sign in with Bitbucket" in page
    assert f'action="{reverse("bitbucket_oauth2_login")}' in page


def test_get_does_not_start_the_dance(bitbucket):
    response = Client().get(reverse("bitbucket_oauth2_login"))
    assert response.status_code == 200  # a confirmation page with a POST form, no redirect
    assert "Location" not in response.headers


def test_sign_in_keys_the_account_by_uuid_across_renames(bitbucket):
    person = _approving_user(bitbucket)
    client = Client()
    finished = _sign_in(client, bitbucket)
    assert finished.status_code == 302 and finished.headers["Location"] == "/"
    user = get_user_model().objects.get(pk=client.session["_auth_user_id"])
    social = SocialAccount.objects.get(provider="bitbucket_oauth2")
    assert social.user == user and social.uid == person.uuid
    assert social.uid != person.account_id
    assert user.username == person.nickname and user.email == person.email
    assert client.get("/").wsgi_request.user == user

    client.post(reverse("account_logout"))
    assert "_auth_user_id" not in client.session
    with bitbucket.world.lock:
        person.nickname = f"{person.nickname}-renamed"
    again = Client()
    assert _sign_in(again, bitbucket).status_code == 302
    assert again.session["_auth_user_id"] == str(user.pk)
    assert get_user_model().objects.count() == 1
    social.refresh_from_db()
    assert SocialAccount.objects.count() == 1
    assert social.extra_data["nickname"] == person.nickname


def test_denied_authorization_shows_an_error_and_signs_nobody_in(bitbucket):
    bitbucket.world.credentials.settings.oauth_deny = True
    client = Client()
    finished = _sign_in(client, bitbucket)
    assert finished.status_code == 302
    assert finished.headers["Location"] == reverse("socialaccount_login_cancelled")
    page = client.get(finished.headers["Location"])
    assert page.status_code == 200 and "cancelled" in page.content.decode().lower()
    assert "_auth_user_id" not in client.session
    assert not SocialAccount.objects.exists()
    assert not get_user_model().objects.exists()


def test_closed_sign_up_creates_nobody(bitbucket, settings):
    settings.ACCOUNT_ALLOW_REGISTRATION = False
    client = Client()
    finished = _sign_in(client, bitbucket)
    assert finished.status_code == 200 and b"Sign Up Closed" in finished.content
    assert "_auth_user_id" not in client.session
    assert not get_user_model().objects.exists()
