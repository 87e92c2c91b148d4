"""A provider is a plug-in: registering the example provider (this folder only) puts its auth
kind and its target field in the wizard's forms, the API's choices, ``apply_config`` and the
admin, and the services accept its connectors and integrations."""

import textwrap

import pytest
from django.test import Client
from django.urls import reverse

from integrations.api.serializers import ConnectorSerializer
from integrations.config import config_apply, config_load
from integrations.forms import ConnectorForm, SetupForm
from integrations.models import Connector, Integration
from tests.integrations.example_provider import provider as example

pytestmark = pytest.mark.django_db

CONFIG = """
connectors:
  - name: example-one
    provider: example
    auth: {kind: example_api_key, account: ada, api_key: "${LANTERN_TEST_EXAMPLE_KEY}"}
    config: {source: plugin}
integrations:
  - name: alpha
    connector: example-one
    collection: alpha
    kind: Component
    type: service
    correlation: [{ingested: name, catalog: metadata.name, operator: equals}]
"""


def test_the_connector_form_offers_its_auth_kind_and_writes_its_fields(
    example_provider, admin_user
):
    form = ConnectorForm(
        user=admin_user,
        data={
            "name": "ex",
            "provider": "example",
            "auth_kind": "example_api_key",
            "identity": "ada",
            "secret": "k-1",
            "base_url": "",
        },
    )
    assert ("example_api_key", "Example API key") in form.fields["auth_kind"].choices
    assert ("example", "Example") in form.fields["provider"].choices
    assert form.is_valid(), form.errors
    kwargs = form.service_kwargs()
    assert (kwargs["config"], kwargs["secrets"]) == ({"account": "ada"}, {"api_key": "k-1"})


def test_the_setup_form_asks_for_its_target_field_and_checks_it(example_provider, admin_user):
    connector = Connector.objects.create(
        name="ex", provider="example", auth_kind="example_api_key", config={"source": "x"}
    )
    form = SetupForm(data={"name": "i", "connector": connector.pk}, user=admin_user)
    field = form.fields["collection"]
    assert (field.label, field.help_text) == ("Collection", example.COLLECTION.help_text)
    assert not form.is_valid()
    assert form.errors["collection"] == ["the collection name is required (a-z, 0-9, -)"]
    form = SetupForm(
        data={"name": "i", "connector": connector.pk, "collection": " alpha "}, user=admin_user
    )
    assert form.is_valid(), form.errors
    assert form.target() == {"collection": "alpha"}


def test_the_api_serializer_offers_its_auth_kind(example_provider):
    choices = ConnectorSerializer().fields["auth_kind"].choices
    assert choices["example_api_key"] == "Example API key"


def test_apply_config_creates_its_connector_and_integration(
    example_provider, tmp_path, monkeypatch
):
    monkeypatch.setenv("LANTERN_TEST_EXAMPLE_KEY", "k-secret")
    path = tmp_path / "lantern.yaml"
    path.write_text(textwrap.dedent(CONFIG).lstrip("\n"), encoding="utf-8")
    config_apply(config_load(path))
    connector = Connector.objects.get(name="example-one")
    assert (connector.provider, connector.auth_kind) == ("example", "example_api_key")
    assert connector.config == {"source": "plugin", "account": "ada"}
    assert connector.secrets == {"api_key": "k-secret"}
    assert Integration.objects.get(name="alpha").target == {"collection": "alpha"}


def test_the_admin_offers_its_auth_kind_and_creates_its_connector(example_provider, admin_user):
    client = Client()
    client.force_login(admin_user)
    url = reverse("admin:integrations_connector_add")
    page = client.get(url)
    assert b'<option value="example_api_key">Example API key</option>' in page.content
    response = client.post(
        url,
        {
            "name": "ex-admin",
            "provider": "example",
            "auth_kind": "example_api_key",
            "config": '{"account": "ada"}',
            "new_secrets": '{"api_key": "k-2"}',
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    connector = Connector.objects.get(name="ex-admin")
    assert connector.auth_kind == "example_api_key" and connector.secrets == {"api_key": "k-2"}
