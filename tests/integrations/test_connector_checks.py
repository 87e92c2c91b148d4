"""A connector is checked when it is saved, the same way through every entry point — the
wizard's connector form, the REST API, the Django admin (add and change) and ``apply_config`` —
before anything is stored: the scheme, the host's addresses (resolved, never connected to),
what the auth kind requires, and the private CA. Each refusal names the field and the reason,
and the stored rows are exactly as they were.

Names resolve through the suite's offline resolver (tests/conftest.py): ``*.test`` to a public
documentation address, ``*.invalid`` to nothing; address literals as themselves.
"""

import json
import socket
import textwrap
from dataclasses import dataclass, field

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from integrations import services
from integrations.config import ConfigError, config_apply, config_load
from integrations.models import Connector

DC_PEM_NOT_A_CA = (
    "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"
)


@dataclass(frozen=True)
class Refusal:
    """One connector that must be refused, and what the refusal must say about which field."""

    id: str
    provider: str
    base_url: str
    field: str
    says: str
    auth_kind: str = "workspace_access_token"
    secrets: dict = field(default_factory=lambda: {"token": "tok-123"})
    ca_pem: str = ""

    @property
    def form_field(self) -> str:
        """Where the wizard's connector form shows it."""
        return {"secrets": "secret", "config": "identity"}.get(self.field, self.field)


REFUSALS = [
    Refusal(
        "dc-http",
        "bitbucket_dc",
        "http://bitbucket.example.test",
        "base_url",
        "must start with https://",
        auth_kind="personal_access_token",
    ),
    Refusal("ftp", "bitbucket_cloud", "ftp://bitbucket.example.test/2.0", "base_url", "ftp://"),
    Refusal(
        "missing-token",
        "bitbucket_cloud",
        "https://api.bitbucket.example.test/2.0",
        "secrets",
        "token or tokens is required for Workspace access token",
        secrets={},
    ),
    Refusal("imds", "bitbucket_cloud", "http://169.254.169.254/2.0", "base_url", "169.254.169.254"),
    Refusal("imds-https", "bitbucket_cloud", "https://169.254.169.254/", "base_url", "internal"),
    Refusal("private", "bitbucket_cloud", "https://10.1.2.3/2.0", "base_url", "internal address"),
    Refusal(
        "unresolvable",
        "bitbucket_cloud",
        "https://bitbucket.nowhere.invalid/2.0",
        "base_url",
        "Cannot resolve bitbucket.nowhere.invalid",
    ),
    Refusal(
        "bad-ca",
        "bitbucket_dc",
        "https://bitbucket.example.test",
        "ca_pem",
        "",
        auth_kind="personal_access_token",
        ca_pem=DC_PEM_NOT_A_CA,
    ),
]
IDS = [refusal.id for refusal in REFUSALS]


@pytest.fixture(autouse=True)
def guarded(settings, monkeypatch):
    """Data Center enabled; no allowlist (so loopback and private ranges are refused); any
    attempt to connect anywhere recorded and failed."""
    settings.BITBUCKET_DC_ENABLED = True
    settings.LANTERN_OUTBOUND_ALLOWLIST = []
    attempts: list = []

    def connect(self, address):
        attempts.append(address)
        raise OSError("no connection may be made while saving a connector")

    monkeypatch.setattr(socket.socket, "connect", connect)
    yield attempts
    assert attempts == []


def stored() -> list[dict]:
    return list(Connector.objects.order_by("pk").values())


@pytest.fixture
def admin_client(admin_user) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


@pytest.fixture
def existing(db) -> dict[str, Connector]:
    """A valid connector of each provider, to change."""
    return {
        "bitbucket_cloud": services.connector_create(
            name="cloud",
            provider="bitbucket_cloud",
            auth_kind="workspace_access_token",
            base_url="https://api.bitbucket.example.test/2.0",
            secrets={"token": "tok-123"},
        ),
        "bitbucket_dc": services.connector_create(
            name="dc",
            provider="bitbucket_dc",
            auth_kind="personal_access_token",
            base_url="https://bitbucket.example.test",
            secrets={"token": "tok-123"},
        ),
    }


# -- the service ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_valid_connectors_are_stored(existing):
    assert Connector.objects.count() == 2
    assert existing["bitbucket_dc"].base_url == "https://bitbucket.example.test"


@pytest.mark.django_db
def test_plain_http_is_accepted_for_an_allowlisted_cloud_host_only(settings):
    settings.LANTERN_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    create = {"provider": "bitbucket_cloud", "auth_kind": "workspace_access_token"}
    services.connector_create(
        name="sandbox", base_url="http://127.0.0.1:9/2.0", secrets={"token": "t"}, **create
    )
    with pytest.raises(services.ValidationError) as caught:
        services.connector_create(
            name="dc",
            provider="bitbucket_dc",
            auth_kind="personal_access_token",
            base_url="http://127.0.0.1:9",
            secrets={"token": "t"},
        )
    assert "must start with https://" in caught.value.message_dict["base_url"][0]


@pytest.mark.django_db
@pytest.mark.parametrize("refusal", REFUSALS, ids=IDS)
def test_the_service_refuses_on_create(refusal):
    with pytest.raises(services.ValidationError) as caught:
        services.connector_create(
            name="new",
            provider=refusal.provider,
            auth_kind=refusal.auth_kind,
            base_url=refusal.base_url,
            secrets=refusal.secrets,
            ca_pem=refusal.ca_pem,
        )
    messages = caught.value.message_dict
    assert list(messages) == [refusal.field]
    assert refusal.says in messages[refusal.field][0]
    assert not Connector.objects.exists()


@pytest.mark.django_db
def test_on_update_the_stored_secrets_count(existing):
    cloud = existing["bitbucket_cloud"]
    services.connector_update(connector=cloud, name="renamed")  # keeps its stored token
    before = stored()
    with pytest.raises(services.ValidationError) as caught:
        services.connector_update(connector=cloud, secrets={})
    assert "token or tokens is required" in caught.value.message_dict["secrets"][0]
    assert stored() == before


# -- the REST API ----------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("refusal", REFUSALS, ids=IDS)
def test_the_api_refuses_on_create_with_the_field(refusal, admin_user):
    client = APIClient()
    client.force_authenticate(admin_user)
    body = {
        "name": "new",
        "provider": refusal.provider,
        "auth_kind": refusal.auth_kind,
        "base_url": refusal.base_url,
        "secrets": refusal.secrets,
        "ca_pem": refusal.ca_pem,
    }
    response = client.post("/api/integrations/connectors", body, format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["name"] == "InputError"
    assert list(error["details"]) == [refusal.field]
    assert refusal.says in error["details"][refusal.field][0]
    assert not Connector.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("refusal", REFUSALS, ids=IDS)
def test_the_api_refuses_on_update_and_changes_nothing(refusal, existing, admin_user):
    client = APIClient()
    client.force_authenticate(admin_user)
    connector = existing[refusal.provider]
    body = {"base_url": refusal.base_url, "secrets": refusal.secrets}
    if refusal.ca_pem:
        body["ca_pem"] = refusal.ca_pem
    before = stored()
    response = client.patch(f"/api/integrations/connectors/{connector.pk}", body, format="json")
    assert response.status_code == 400, response.content
    assert refusal.says in response.json()["error"]["details"][refusal.field][0]
    assert stored() == before


# -- the wizard's connector form -----------------------------------------------------------------


def _wizard_post(client: Client, refusal: Refusal):
    return client.post(
        reverse("integrations:wizard", kwargs={"step": "setup"}),
        {
            "action": "create_connector",
            "name": "acme",
            "connector-name": "new",
            "connector-provider": refusal.provider,
            "connector-auth_kind": refusal.auth_kind,
            "connector-secret": refusal.secrets.get("token", ""),
            "connector-base_url": refusal.base_url,
            "connector-ca_pem": refusal.ca_pem,
        },
    )


@pytest.mark.django_db
@pytest.mark.parametrize("refusal", REFUSALS, ids=IDS)
def test_the_wizard_shows_the_refusal_under_its_field(refusal, admin_client):
    response = _wizard_post(admin_client, refusal)
    assert response.status_code == 200
    form = response.context["connector_form"]
    assert list(form.errors) == [refusal.form_field]
    html = response.content.decode()
    error_id = f'id="id_connector-{refusal.form_field}_error"'
    assert html.count(error_id) == 1
    under_field = html.split(error_id, 1)[1].split("</ul>", 1)[0]
    if refusal.field == "secrets":  # the form itself asks for what the kind requires
        assert "This field is required." in under_field
    else:
        assert refusal.says.replace("'", "&#x27;") in under_field
    assert not Connector.objects.exists()


# -- the admin -------------------------------------------------------------------------------------


def _admin_data(refusal: Refusal, **overrides) -> dict:
    return {
        "name": "new",
        "provider": refusal.provider,
        "auth_kind": refusal.auth_kind,
        "base_url": refusal.base_url,
        "config": "{}",
        "ca_pem": refusal.ca_pem,
        "new_secrets": json.dumps(refusal.secrets) if refusal.secrets else "",
        **overrides,
    }


@pytest.mark.django_db
@pytest.mark.parametrize("refusal", REFUSALS, ids=IDS)
def test_the_admin_add_form_refuses_with_the_field(refusal, admin_client):
    response = admin_client.post(reverse("admin:integrations_connector_add"), _admin_data(refusal))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    admin_field = {"secrets": "new_secrets"}.get(refusal.field, refusal.field)
    assert list(errors) == [admin_field]
    assert refusal.says in errors[admin_field][0]
    assert not Connector.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("refusal", REFUSALS, ids=IDS)
def test_the_admin_change_form_refuses_and_changes_nothing(refusal, existing, admin_client):
    connector = existing[refusal.provider]
    data = _admin_data(refusal, name=connector.name)
    if refusal.field == "secrets":
        data["new_secrets"] = json.dumps({})
    before = stored()
    response = admin_client.post(
        reverse("admin:integrations_connector_change", args=[connector.pk]), data
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    admin_field = {"secrets": "new_secrets"}.get(refusal.field, refusal.field)
    assert refusal.says in errors[admin_field][0]
    assert stored() == before


# -- apply_config ----------------------------------------------------------------------------------


def _yaml(refusal: Refusal, tmp_path, name: str = "new") -> str:
    auth = {"kind": refusal.auth_kind}
    if refusal.secrets:
        auth["token"] = "${LANTERN_TEST_TOKEN}"
    lines = [
        "connectors:",
        f"  - name: {name}",
        f"    provider: {refusal.provider}",
        f"    base_url: {refusal.base_url}",
        f"    auth: {json.dumps(auth)}",
    ]
    if refusal.ca_pem:
        (tmp_path / "ca.pem").write_text(refusal.ca_pem, encoding="ascii")
        lines.append("    ca_pem_file: ca.pem")
    path = tmp_path / "lantern.yaml"
    path.write_text(textwrap.dedent("\n".join(lines)) + "\n", encoding="utf-8")
    return str(path)


def _apply(path: str) -> str:
    with pytest.raises(ConfigError) as caught:
        config_apply(config_load(path))
    return str(caught.value)


@pytest.mark.django_db
@pytest.mark.parametrize("refusal", REFUSALS, ids=IDS)
def test_apply_config_refuses_a_new_connector(refusal, tmp_path, monkeypatch):
    monkeypatch.setenv("LANTERN_TEST_TOKEN", "tok-123")
    message = _apply(_yaml(refusal, tmp_path))
    assert {"secrets": "token"}.get(refusal.field, refusal.field) in message
    assert refusal.says.split(" for ")[0] in message
    assert not Connector.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "refusal", [r for r in REFUSALS if r.field != "secrets"], ids=lambda r: r.id
)
def test_apply_config_refuses_a_change_and_changes_nothing(
    refusal, existing, tmp_path, monkeypatch
):
    monkeypatch.setenv("LANTERN_TEST_TOKEN", "tok-123")
    name = existing[refusal.provider].name
    before = stored()
    message = _apply(_yaml(refusal, tmp_path, name=name))
    # The file reader refuses what it can tell alone (not an http(s) URL), the service the rest.
    assert f"connector {name}: {refusal.field}: " in message or (
        f"connector {name}.{refusal.field}: " in message
    )
    assert refusal.says in message
    assert stored() == before
