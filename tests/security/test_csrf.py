"""CSRF: a write authenticated by the session cookie needs the CSRF token (the browser sends the
cookie to any site's forms; only a page of ours can read the token). A bearer token is not sent by
the browser on its own, so token-authenticated API writes need no CSRF token, and webhooks are
authenticated by their signature instead.

Every mutating API operation and every UI route accepting POST is checked (enumerated as in the
permission matrix), with a user holding every permission, so only CSRF can refuse.
"""

import hashlib
import hmac

import pytest
from django.test import Client
from rest_framework.test import APIClient

from integrations import services
from tests.security.conftest import (
    API_PERMISSIONS,
    UI_PERMISSIONS,
    PathObjects,
    mutating_operations,
    stored_state,
    ui_routes,
)

PERMISSIONS = sorted({*API_PERMISSIONS.values(), *UI_PERMISSIONS.values()} - {None})
LET_THROUGH_API = {200, 201, 202, 204, 207, 400, 409}
UI_POST_ROUTES = [route for route in ui_routes() if route.name in UI_PERMISSIONS]


@pytest.fixture
def editor(make_user):
    return make_user("editor", *PERMISSIONS)


def _browser(user) -> tuple[Client, str]:
    """A signed-in browser that checks CSRF like production, and the token a page of ours
    gave it."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.get("/").status_code == 200  # the page sets the CSRF cookie
    return client, client.cookies["csrftoken"].value


def _api_call(client, operation, path: str, **headers):
    return client.generic(operation.method, path, "{}", "application/json", **headers)


@pytest.mark.django_db
@pytest.mark.parametrize("operation", mutating_operations(), ids=str)
def test_session_api_writes_need_the_csrf_token(
    operation, path_objects: PathObjects, editor, subtests
):
    client, token = _browser(editor)
    path = path_objects.api_path(operation)
    refusals = {
        "no token": {},
        "token not matching the cookie": {"HTTP_X_CSRFTOKEN": "x" * 32},
    }
    for case, headers in refusals.items():
        with subtests.test(case=case):
            before = stored_state()
            response = _api_call(client, operation, path, **headers)
            assert response.status_code == 403, response.content
            assert response.json()["error"]["message"].startswith("CSRF Failed")
            assert stored_state() == before
    with subtests.test(case="with the token"):
        response = _api_call(client, operation, path, HTTP_X_CSRFTOKEN=token)
        assert response.status_code in LET_THROUGH_API, response.content


@pytest.mark.django_db
@pytest.mark.parametrize("operation", mutating_operations(), ids=str)
def test_bearer_api_writes_need_no_csrf_token(
    operation, path_objects: PathObjects, editor, bearer_client
):
    client: APIClient = bearer_client(editor)
    client.handler.enforce_csrf_checks = True
    client.force_login(editor)  # a session cookie as well: the bearer token still decides
    response = _api_call(client, operation, path_objects.api_path(operation))
    assert response.status_code in LET_THROUGH_API, response.content


@pytest.mark.django_db
@pytest.mark.parametrize("route", UI_POST_ROUTES, ids=str)
def test_ui_actions_need_the_csrf_token(route, path_objects: PathObjects, editor, subtests):
    client, token = _browser(editor)
    url = path_objects.ui_url(route)
    with subtests.test(case="no token"):
        before = stored_state()
        response = client.post(url, {})
        assert response.status_code == 403
        assert b"CSRF verification failed" in response.content
        assert stored_state() == before
    with subtests.test(case="with the token"):
        response = client.post(url, {"csrfmiddlewaretoken": token})
        assert response.status_code in (200, 302), response.content


@pytest.mark.django_db
def test_signing_in_and_out_need_the_csrf_token(make_user):
    user = make_user("someone")
    browser = Client(enforce_csrf_checks=True)
    credentials = {"login": "someone", "password": "pw-unused-123"}
    assert browser.post("/accounts/login/", credentials).status_code == 403
    page = browser.get("/accounts/login/")
    token = page.cookies["csrftoken"].value
    signed_in = browser.post("/accounts/login/", {**credentials, "csrfmiddlewaretoken": token})
    assert signed_in.status_code == 302
    assert browser.session["_auth_user_id"] == str(user.pk)
    assert browser.post("/accounts/logout/").status_code == 403
    assert browser.session["_auth_user_id"] == str(user.pk)


@pytest.mark.django_db
def test_webhooks_are_exempt_and_checked_by_their_signature(editor):
    connector = services.connector_create(
        name="cloud",
        provider="bitbucket_cloud",
        auth_kind="workspace_access_token",
        secrets={"token": "unused"},
    )
    integration = services.integration_create(
        connector=connector, name="cloud", target={"workspace": "acme"}
    )
    client, _ = _browser(editor)  # a session cookie and no CSRF token, as a forged form sends
    body = b'{"repository": {}}'
    url = f"/webhooks/bitbucket-cloud/{integration.pk}"
    headers = {"HTTP_X_EVENT_KEY": "repo:push", "HTTP_X_REQUEST_UUID": "d-1"}
    forged = client.post(
        url, body, "application/json", HTTP_X_HUB_SIGNATURE="sha256=" + "0" * 64, **headers
    )
    assert forged.status_code == 401  # the endpoint ran and refused the signature
    signature = hmac.new(integration.webhook_secret.encode(), body, hashlib.sha256).hexdigest()
    signed = client.post(
        url, body, "application/json", HTTP_X_HUB_SIGNATURE=f"sha256={signature}", **headers
    )
    assert signed.status_code in (200, 202, 400), signed.content
