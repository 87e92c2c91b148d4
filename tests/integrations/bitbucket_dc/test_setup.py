"""Setting up Data Center connectors and integrations: the feature flag (services, API, admin)
and the private CA a connector may carry (each refusal with its reason)."""

import json

import pytest
from django.test import Client
from django.urls import reverse

from integrations import services
from integrations.models import Connector, Integration
from integrations.providers.bitbucket_dc.provider import NOT_ENABLED
from integrations.providers.bitbucket_dc.tls import MAX_PEM_BYTES
from tests.integrations.api.conftest import API, EDIT
from tests.integrations.test_private_ca import certificate_pem
from tests.sandbox.fixtures import DC_TOKEN


def create(**values):
    fields = {
        "name": "dc",
        "provider": "bitbucket_dc",
        "auth_kind": "personal_access_token",
        "base_url": "https://bitbucket.example.test",
        "secrets": {"token": DC_TOKEN},
        **values,
    }
    return services.connector_create(**fields)


@pytest.fixture
def admin_client(admin_user) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


@pytest.fixture
def editor_client(make_user, bearer_client):
    return bearer_client(make_user("editor", EDIT))


def admin_url(model, view: str = "add") -> str:
    return reverse(f"admin:integrations_{model._meta.model_name}_{view}")


CONNECTOR_FORM = {
    "name": "dc",
    "provider": "bitbucket_dc",
    "auth_kind": "personal_access_token",
    "base_url": "https://bitbucket.example.test",
    "config": "{}",
    "ca_pem": "",
    "new_secrets": json.dumps({"token": DC_TOKEN}),
}


def integration_form(connector) -> dict:
    return {
        "name": "dc",
        "connector": connector.pk,
        "target": json.dumps({"projects": ["PLAT"]}),
        "labels": "[]",
        "registration": "register_and_merge",
        "entity_kind": "Component",
        "entity_type": "service",
        "secondary_kinds": ["commits"],
        "update_frequency": "60",
        "state": "enabled",
        "vanish_threshold": "0.5",
        "full_sync_interval": "1440",
        "correlation_rules-TOTAL_FORMS": "0",
        "correlation_rules-INITIAL_FORMS": "0",
        "field_mappings-TOTAL_FORMS": "0",
        "field_mappings-INITIAL_FORMS": "0",
    }


# -- the feature flag ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_with_the_flag_off_the_services_refuse_connectors_and_integrations(settings):
    settings.BITBUCKET_DC_ENABLED = True
    connector = create()
    settings.BITBUCKET_DC_ENABLED = False
    with pytest.raises(services.ValidationError) as refused:
        create(name="other")
    assert refused.value.message_dict == {"provider": [NOT_ENABLED]}
    with pytest.raises(services.ValidationError) as refused:
        services.integration_create(connector=connector, name="dc")
    assert refused.value.message_dict == {"connector": [NOT_ENABLED]}
    assert NOT_ENABLED == "Bitbucket Data Center is not enabled: set BITBUCKET_DC_ENABLED=true"


@pytest.mark.django_db
def test_with_the_flag_off_the_api_refuses_connectors_and_integrations(settings, editor_client):
    settings.BITBUCKET_DC_ENABLED = False
    body = {k: v for k, v in CONNECTOR_FORM.items() if k not in ("config", "new_secrets")}
    response = editor_client.post(
        f"{API}/connectors", {**body, "secrets": {"token": DC_TOKEN}}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["details"] == {"provider": [NOT_ENABLED]}
    assert not Connector.objects.exists()

    settings.BITBUCKET_DC_ENABLED = True
    connector = create()
    settings.BITBUCKET_DC_ENABLED = False
    response = editor_client.post(
        f"{API}/", {"name": "dc", "connector": connector.pk}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["details"] == {"connector": [NOT_ENABLED]}
    assert not Integration.objects.exists()

    settings.BITBUCKET_DC_ENABLED = True
    response = editor_client.post(
        f"{API}/", {"name": "dc", "connector": connector.pk}, format="json"
    )
    assert response.status_code == 201, response.json()


@pytest.mark.django_db
def test_with_the_flag_off_the_admin_refuses_connectors_and_integrations(settings, admin_client):
    settings.BITBUCKET_DC_ENABLED = False
    page = admin_client.get(admin_url(Connector)).content.decode()
    assert "Bitbucket Data Center (not enabled)" in page
    response = admin_client.post(admin_url(Connector), CONNECTOR_FORM)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["provider"] == [NOT_ENABLED]
    assert not Connector.objects.exists()

    settings.BITBUCKET_DC_ENABLED = True
    connector = create()
    settings.BITBUCKET_DC_ENABLED = False
    response = admin_client.post(admin_url(Integration), integration_form(connector))
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["connector"] == [NOT_ENABLED]
    assert not Integration.objects.exists()

    settings.BITBUCKET_DC_ENABLED = True
    assert "(not enabled)" not in admin_client.get(admin_url(Connector)).content.decode()
    response = admin_client.post(admin_url(Integration), integration_form(connector))
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert Integration.objects.get().target == {"projects": ["PLAT"]}


# -- the private CA --------------------------------------------------------------------------------

REFUSED_PEMS = [
    ("x" * (MAX_PEM_BYTES + 1), "The CA certificate is larger than 64 KiB"),
    (certificate_pem(ca=False), "CN=leaf is not a CA certificate (BasicConstraints CA=true"),
    (
        certificate_pem(ca=True, days=10, starts_in_days=-30),
        "The CA certificate CN=Test CA expired",
    ),
    ("garbage", "Not a PEM certificate: expected -----BEGIN CERTIFICATE-----"),
    (
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        "The PEM could not be parsed as certificates",
    ),
]
REFUSED_IDS = ["over-64-KiB", "leaf", "expired", "garbage", "broken-PEM"]


@pytest.mark.django_db
@pytest.mark.parametrize(("pem", "reason"), REFUSED_PEMS, ids=REFUSED_IDS)
def test_a_connector_refuses_a_ca_pem_that_is_not_a_valid_ca(settings, pem, reason):
    settings.BITBUCKET_DC_ENABLED = True
    with pytest.raises(services.ValidationError) as refused:
        create(ca_pem=pem)
    (message,) = refused.value.message_dict["ca_pem"]
    assert message.startswith(reason)
    assert not Connector.objects.exists()
    connector = create(ca_pem=certificate_pem(ca=True))
    with pytest.raises(services.ValidationError) as refused:
        services.connector_update(connector=connector, ca_pem=pem)
    assert refused.value.message_dict["ca_pem"][0].startswith(reason)


@pytest.mark.django_db
def test_a_valid_ca_bundle_is_stored_and_can_be_cleared(settings):
    settings.BITBUCKET_DC_ENABLED = True
    bundle = certificate_pem(ca=True) + certificate_pem(ca=True)
    connector = create(ca_pem=bundle)
    assert Connector.objects.get().ca_pem == bundle
    services.connector_update(connector=connector, ca_pem="")
    assert Connector.objects.get().ca_pem == ""


@pytest.mark.django_db
def test_the_api_and_the_admin_refuse_a_leaf_certificate_with_the_reason(
    settings, editor_client, admin_client
):
    settings.BITBUCKET_DC_ENABLED = True
    leaf = certificate_pem(ca=False)
    body = {k: v for k, v in CONNECTOR_FORM.items() if k not in ("config", "new_secrets")}
    response = editor_client.post(
        f"{API}/connectors", {**body, "ca_pem": leaf, "secrets": {"token": "t"}}, format="json"
    )
    assert response.status_code == 400
    assert "is not a CA certificate" in response.json()["error"]["details"]["ca_pem"][0]
    response = admin_client.post(admin_url(Connector), {**CONNECTOR_FORM, "ca_pem": leaf})
    assert response.status_code == 200
    assert "is not a CA certificate" in response.context["adminform"].form.errors["ca_pem"][0]
    assert not Connector.objects.exists()
