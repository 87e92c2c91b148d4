"""The wizard's connector form fits the provider: the auth kinds offered are the chosen
provider's own (and the page carries each provider's list to update the choice when the
provider changes), a kind the provider does not have is refused under the field, what the kind
requires is marked required, and each error stands once, under its field."""

import json
import re

import pytest
from django.test import Client
from django.urls import reverse

from integrations.models import Connector
from tests.integrations.api.conftest import make_scope  # noqa: F401

SETUP = reverse("integrations:wizard", kwargs={"step": "setup"})
CLOUD_KINDS = [
    ("workspace_access_token", "Workspace access token"),
    ("project_access_token", "Project access token"),
    ("repository_access_token", "Repository access token"),
    ("api_token", "API token (email + token)"),
    ("app_password", "App password (legacy)"),
    ("oauth_consumer", "OAuth consumer"),
]
DC_KINDS = [
    ("personal_access_token", "Personal access token"),
    ("oauth_application_link", "OAuth 2.0 application link"),
]


@pytest.fixture(autouse=True)
def data_center_enabled(settings):
    settings.BITBUCKET_DC_ENABLED = True


@pytest.fixture
def admin_client(admin_user) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


def options(html: str, name: str) -> list[tuple[str, str]]:
    select = re.search(rf'<select name="{name}"[^>]*>(.*?)</select>', html, re.S)
    assert select, f"no select {name}"
    return re.findall(r'<option value="([^"]*)"[^>]*>([^<]*)</option>', select.group(1))


def label_of(html: str, field_id: str) -> str:
    match = re.search(rf'<label for="{field_id}">(.*?)</label>', html, re.S)
    assert match, f"no label for {field_id}"
    return match.group(1)


def error_under(html: str, field_id: str) -> str:
    """The error list right after the field's input, or ''."""
    match = re.search(rf'<ul class="errorlist" id="{field_id}_error">(.*?)</ul>', html, re.S)
    return match.group(1) if match else ""


def post(client: Client, **connector) -> str:
    data = {"action": "create_connector", "name": "acme"}
    data.update({f"connector-{key}": value for key, value in connector.items()})
    response = client.post(SETUP, data)
    assert response.status_code == 200
    return response.content.decode()


@pytest.mark.django_db
def test_the_cloud_form_offers_the_cloud_kinds_only(admin_client):
    html = admin_client.get(SETUP).content.decode()
    assert options(html, "connector-provider")[0] == ("bitbucket_cloud", "Bitbucket Cloud")
    assert options(html, "connector-auth_kind") == CLOUD_KINDS


@pytest.mark.django_db
def test_the_page_carries_each_providers_kinds_for_the_provider_switch(admin_client):
    html = admin_client.get(SETUP).content.decode()
    data = re.search(
        r'<script id="auth-kinds-by-provider" type="application/json">(.*?)</script>', html, re.S
    )
    kinds = json.loads(data.group(1))
    assert [tuple(kind) for kind in kinds["bitbucket_cloud"]] == CLOUD_KINDS
    assert [tuple(kind) for kind in kinds["bitbucket_dc"]] == DC_KINDS
    assert 'getElementById("id_connector-provider")' in html


@pytest.mark.django_db
def test_a_kind_the_provider_lacks_is_refused_under_the_field(admin_client):
    html = post(
        admin_client,
        name="dc",
        provider="bitbucket_dc",
        auth_kind="workspace_access_token",
        secret="tok-123",
        base_url="https://bitbucket.example.test",
    )
    assert options(html, "connector-auth_kind") == DC_KINDS  # the chosen provider's
    error = error_under(html, "id_connector-auth_kind")
    assert "Bitbucket Data Center has no auth kind workspace_access_token" in error
    assert "Personal access token, OAuth 2.0 application link" in error
    assert html.count("has no auth kind") == 1
    assert not Connector.objects.exists()


@pytest.mark.django_db
def test_what_the_kind_needs_is_marked_required(admin_client):
    html = admin_client.get(SETUP).content.decode()
    assert "(optional)" not in label_of(html, "id_connector-secret")
    assert 'id="id_connector-secret_required"' in html
    assert re.search(r'<input type="password" name="connector-secret"[^>]*required', html)
    workspace = label_of(html, "id_workspace")
    assert "(required for Bitbucket Cloud)" in workspace and "(optional)" not in workspace
    assert "(optional)" in label_of(html, "id_projects")
    # An API token needs the account e-mail as well.
    html = post(admin_client, name="c", provider="bitbucket_cloud", auth_kind="api_token")
    assert "Account email" in label_of(html, "id_connector-identity")
    assert 'id="id_connector-identity_required"' in html
    assert 'id="id_projects_required"' not in html


@pytest.mark.django_db
def test_each_error_stands_once_under_its_field(admin_client):
    html = post(
        admin_client,
        name="c",
        provider="bitbucket_cloud",
        auth_kind="workspace_access_token",
        secret="",
        base_url="https://10.1.2.3/2.0",
    )
    assert "This field is required." in error_under(html, "id_connector-secret")
    assert html.count("This field is required.") == 1
    assert not Connector.objects.exists()
    html = post(
        admin_client,
        name="c",
        provider="bitbucket_cloud",
        auth_kind="workspace_access_token",
        secret="tok-123",
        base_url="https://10.1.2.3/2.0",
    )
    assert "internal address" in error_under(html, "id_connector-base_url")
    assert html.count("internal address") == 1
    assert not Connector.objects.exists()


@pytest.mark.django_db
def test_the_missing_workspace_of_a_cloud_connector_stands_under_its_field(admin_client):
    admin_client.post(
        SETUP,
        {
            "action": "create_connector",
            "connector-name": "c",
            "connector-provider": "bitbucket_cloud",
            "connector-auth_kind": "workspace_access_token",
            "connector-secret": "tok-123",
            "connector-base_url": "https://api.bitbucket.example.test/2.0",
        },
    )
    connector = Connector.objects.get(name="c")
    response = admin_client.post(
        SETUP, {"action": "next", "name": "acme", "connector": connector.pk, "workspace": ""}
    )
    html = response.content.decode()
    assert "the workspace slug is required" in error_under(html, "id_workspace")
    assert html.count("the workspace slug is required") == 1


@pytest.mark.django_db
def test_a_scoped_admin_gives_the_new_connector_one_of_its_scopes(
    make_user,
    make_scope,  # noqa: F811
):
    from catalog.models import ScopeMembership

    user = make_user("scoped", "integrations.edit_integration")
    scope = make_scope("alpha")
    ScopeMembership.objects.create(user=user, scope=scope)
    client = Client()
    client.force_login(user)
    connector = {
        "name": "c",
        "provider": "bitbucket_cloud",
        "auth_kind": "workspace_access_token",
        "secret": "tok-123",
    }
    html = post(client, **connector)
    assert "belongs to the whole account" in error_under(html, "id_connector-scope")
    assert not Connector.objects.exists()
    client.post(
        SETUP,
        {"action": "create_connector", "name": "acme", "connector-scope": scope.pk}
        | {f"connector-{key}": value for key, value in connector.items()},
    )
    assert Connector.objects.get(name="c").scope == scope
