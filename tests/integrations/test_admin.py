"""The integrations admin: renders without N+1, writes through the services, never shows a
secret, and its actions call the services."""

import json

import pytest
from django.test import Client
from django.urls import reverse

from catalog.models import Entity, Scope
from integrations import services
from integrations.engine.sync import integration_sync
from integrations.models import (
    Commit,
    Connector,
    DiscoveredEntity,
    ImportedEntity,
    Integration,
    PullRequest,
    SyncRun,
    WebhookDelivery,
)
from integrations.providers import registry
from integrations.providers.bitbucket_cloud import provider as cloud
from tests.integrations.fake_provider import FakeProvider

SECRET = "s3cr3t-token-value-42"


class TokenProvider(FakeProvider):
    key = "admin_token"
    name = "Fake with tokens"
    auth_kinds = (cloud.WORKSPACE_ACCESS_TOKEN, cloud.API_TOKEN)


@pytest.fixture
def token_provider():
    registry.register(TokenProvider)
    yield TokenProvider
    registry.unregister(TokenProvider.key)


@pytest.fixture
def client(admin_user) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


@pytest.fixture
def synced(world, make_integration):
    """Two integrations, several rows of everything the engine records."""
    for index in range(5):
        world.add_repo(f"repo-{index}", description=f"Repo {index}", prs=3, commits=3)
    first = make_integration("acme", auto_import=True)
    second = make_integration("beta", auto_import=True, target={"workspace": "beta"})
    for integration in (first, second, first):
        integration_sync(integration_id=integration.pk, trigger="manual")
    account = Scope.objects.create(name="Acme", slug="acme", kind="account")
    for index in range(3):
        services.connector_create(
            name=f"other-{index}", provider="fake", auth_kind="none", scope=account
        )
    for index in range(4):
        WebhookDelivery.objects.create(
            integration=first, delivery_id=f"d-{index}", event="repo:push", outcome="processed"
        )
    return first


def admin_url(model, view: str = "changelist", *args) -> str:
    return reverse(f"admin:integrations_{model._meta.model_name}_{view}", args=args)


def form_data(response) -> dict:
    """The POST body the admin page would submit unchanged (main form and inlines)."""
    data: dict = {}
    forms = [response.context["adminform"].form]
    for inline in response.context["inline_admin_formsets"]:
        forms.append(inline.formset.management_form)
        forms.extend(inline.formset.forms)
    for form in forms:
        for name in form.fields:
            value = form[name].value()
            if value is None or value is False:
                continue
            key = form.add_prefix(name)
            data[key] = "on" if value is True else value if isinstance(value, list) else str(value)
    return data


RECORD_MODELS = [SyncRun, DiscoveredEntity, ImportedEntity, WebhookDelivery, PullRequest, Commit]


# Pinned: session, user, counts, list filters' choices and one page of rows (related rows
# joined), whatever the number of rows.
CHANGELIST_QUERIES = {
    Connector: 6,
    Integration: 7,
    SyncRun: 5,
    DiscoveredEntity: 5,
    ImportedEntity: 5,
    WebhookDelivery: 7,
    PullRequest: 6,
    Commit: 5,
}


@pytest.mark.django_db
@pytest.mark.parametrize("model", CHANGELIST_QUERIES, ids=lambda model: model.__name__)
def test_changelists_render_in_constant_queries(
    model, synced, client, django_assert_max_num_queries
):
    assert model.objects.count() >= 2
    with django_assert_max_num_queries(CHANGELIST_QUERIES[model]):
        response = client.get(admin_url(model))
    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == min(model.objects.count(), 50)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "model", [Connector, Integration, *RECORD_MODELS], ids=lambda model: model.__name__
)
def test_change_pages_render(model, synced, client):
    obj = model.objects.first()
    response = client.get(admin_url(model, "change", obj.pk))
    assert response.status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("model", RECORD_MODELS, ids=lambda model: model.__name__)
def test_engine_records_cannot_be_added_or_edited(model, synced, client):
    obj = model.objects.first()
    assert client.get(admin_url(model, "add")).status_code == 403
    response = client.get(admin_url(model, "change", obj.pk))
    assert b'type="submit"' not in response.content.split(b'id="content-main"')[1]


@pytest.mark.django_db
def test_search_and_filters_of_discovered_entities(synced, client):
    response = client.get(
        admin_url(DiscoveredEntity),
        {"q": "repo-1", "integration__id__exact": synced.pk, "state__exact": "imported"},
    )
    assert [d.name for d in response.context["cl"].result_list] == ["repo-1"]


@pytest.mark.django_db
def test_connector_secrets_are_write_only(token_provider, client):
    response = client.post(
        admin_url(Connector, "add"),
        {
            "name": "cloud",
            "provider": "admin_token",
            "auth_kind": "workspace_access_token",
            "base_url": "https://api.example.test/2.0",
            "config": "{}",
            "ca_pem": "",
            "new_secrets": json.dumps({"token": SECRET}),
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    connector = Connector.objects.get(name="cloud")
    assert connector.secrets == {"token": SECRET}
    assert SECRET not in connector.secrets_encrypted

    page = client.get(admin_url(Connector, "change", connector.pk)).content.decode()
    assert SECRET not in page
    assert connector.secrets_encrypted not in page
    assert "secrets_encrypted" not in page
    assert 'name="new_secrets"' in page

    data = form_data(client.get(admin_url(Connector, "change", connector.pk)))
    assert not data.get("new_secrets")
    data["base_url"] = "https://dc.example.test"
    assert client.post(admin_url(Connector, "change", connector.pk), data).status_code == 302
    connector.refresh_from_db()
    assert connector.base_url == "https://dc.example.test"
    assert connector.secrets == {"token": SECRET}  # blank keeps the stored secrets

    history = client.get(admin_url(Connector, "history", connector.pk)).content.decode()
    assert SECRET not in history


@pytest.mark.django_db
def test_a_rejected_connector_form_does_not_echo_the_typed_secret(token_provider, client):
    response = client.post(
        admin_url(Connector, "add"),
        {
            "name": "cloud",
            "provider": "admin_token",
            "auth_kind": "workspace_access_token",
            "base_url": "not a url",
            "config": "{}",
            "new_secrets": json.dumps({"token": SECRET, "bogus": "x"}),
        },
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert set(errors) == {"base_url", "new_secrets"}
    assert "unknown secrets for workspace_access_token: bogus" in errors["new_secrets"][0]
    assert SECRET not in response.content.decode()
    assert not Connector.objects.exists()


@pytest.mark.django_db
def test_connector_auth_kind_must_be_supported_by_its_provider(fake_provider, client):
    response = client.post(
        admin_url(Connector, "add"),
        {"name": "f", "provider": "fake", "auth_kind": "api_token", "config": "{}"},
    )
    assert response.context["adminform"].form.errors["auth_kind"] == [
        "Fake supports these auth kinds: none"
    ]


@pytest.mark.django_db
def test_integration_add_goes_through_the_service(connector, client):
    response = client.get(admin_url(Integration, "add"))
    assert response.status_code == 200
    response = client.post(
        admin_url(Integration, "add"),
        {
            "name": "acme",
            "connector": connector.pk,
            "target": json.dumps({"workspace": "acme"}),
            "labels": "[]",
            "registration": "register_and_merge",
            "entity_kind": "Component",
            "entity_type": "service",
            "secondary_kinds": ["commits"],
            "update_frequency": "60",
            "state": "enabled",
            "vanish_threshold": "0.5",
            "correlation_rules-TOTAL_FORMS": "0",
            "correlation_rules-INITIAL_FORMS": "0",
            "field_mappings-TOTAL_FORMS": "0",
            "field_mappings-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    integration = Integration.objects.get(name="acme")
    assert integration.provider == "fake"
    assert integration.secondary_kinds == ["commits"]
    assert integration.webhook_secret  # set by integration_create
    assert integration.next_sync_at is not None
    assert [(r.ingested_path, r.catalog_path) for r in integration.correlation_rules.all()] == [
        ("name", "metadata.name")
    ]
    assert {m.catalog_path for m in integration.field_mappings.all()} == set(
        FakeProvider.default_field_mappings
    )


@pytest.mark.django_db
def test_integration_change_page_freezes_secondary_kinds_and_hides_the_webhook_secret(
    make_integration, client
):
    integration = make_integration()
    page = client.get(admin_url(Integration, "change", integration.pk)).content.decode()
    assert 'name="secondary_kinds"' not in page
    assert integration.webhook_secret not in page
    assert integration.webhook_secret_encrypted not in page
    assert "webhook_secret" not in page


@pytest.mark.django_db
def test_integration_change_saves_settings_and_inline_rules_through_the_service(
    make_integration, client
):
    integration = make_integration()
    url = admin_url(Integration, "change", integration.pk)
    data = form_data(client.get(url))
    data["description"] = "Acme *repos*"
    data["correlation_rules-0-operator"] = "contains"
    data["field_mappings-0-DELETE"] = "on"

    response = client.post(url, data)

    assert response.status_code == 302
    integration.refresh_from_db()
    assert integration.description == "Acme *repos*"
    assert integration.secondary_kinds == ["pull_requests", "commits"]
    assert [r.operator for r in integration.correlation_rules.all()] == ["contains"]
    assert integration.field_mappings.count() == len(FakeProvider.default_field_mappings) - 1


@pytest.mark.django_db
def test_invalid_jmespath_in_an_inline_is_shown_on_the_row(make_integration, client):
    integration = make_integration()
    url = admin_url(Integration, "change", integration.pk)
    data = form_data(client.get(url))
    data["correlation_rules-0-ingested_path"] = "name["
    data["field_mappings-0-expression"] = "links.[html"
    data["description"] = "should not be saved"

    response = client.post(url, data)

    assert response.status_code == 200
    rules, mappings = (inline.formset for inline in response.context["inline_admin_formsets"])
    assert "Invalid JMESPath expression 'name['" in rules.forms[0].errors["ingested_path"][0]
    assert "Invalid JMESPath expression 'links.[html'" in mappings.forms[0].errors["expression"][0]
    assert "Invalid JMESPath expression" in response.content.decode()
    integration.refresh_from_db()
    assert integration.description == ""
    assert integration.correlation_rules.get().ingested_path == "name"


@pytest.mark.django_db
def test_integration_target_is_validated_against_the_provider(make_integration, client):
    integration = make_integration()
    url = admin_url(Integration, "change", integration.pk)
    data = form_data(client.get(url))
    data["target"] = json.dumps({"projects": ["PRJ"]})
    response = client.post(url, data)
    assert response.context["adminform"].form.errors["target"] == [
        "projects: unknown setting for this provider"
    ]


def run_action(client, model, action: str, *objects):
    return client.post(
        admin_url(model),
        {"action": action, "_selected_action": [obj.pk for obj in objects]},
        follow=True,
    )


@pytest.mark.django_db
def test_sync_now_enqueues_a_manual_sync(
    world, make_integration, client, django_capture_on_commit_callbacks
):
    world.add_repo("billing")
    integration = make_integration()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = run_action(client, Integration, "sync_now", integration)
    assert len(callbacks) == 1
    assert "Sync queued for 1 integration(s)." in response.content.decode()
    run = SyncRun.objects.get(integration=integration)
    assert (run.trigger, run.state, run.discovered) == ("manual", "succeeded", 1)


@pytest.mark.django_db
def test_suspend_and_resume_actions_call_the_services(make_integration, client):
    integration = make_integration()
    run_action(client, Integration, "suspend", integration)
    integration.refresh_from_db()
    assert integration.state == "suspended"

    response = run_action(client, Integration, "sync_now", integration)
    assert "1 suspended integration(s) skipped" in response.content.decode()

    Integration.objects.filter(pk=integration.pk).update(next_sync_at=None)
    run_action(client, Integration, "resume", integration)
    integration.refresh_from_db()
    assert integration.state == "enabled" and integration.next_sync_at is not None


@pytest.mark.django_db
def test_deleting_an_integration_keeps_its_catalog_entities(synced, client):
    entity_ids = set(synced.imported.values_list("entity_id", flat=True))
    response = client.post(admin_url(Integration, "delete", synced.pk), {"post": "yes"})
    assert response.status_code == 302
    assert not Integration.objects.filter(pk=synced.pk).exists()
    assert set(Entity.objects.filter(pk__in=entity_ids).values_list("pk", flat=True)) == entity_ids


@pytest.mark.django_db
def test_import_and_unlink_actions(world, make_integration, client):
    world.add_repo("billing")
    integration = make_integration()
    integration_sync(integration_id=integration.pk, trigger="manual")
    discovered = DiscoveredEntity.objects.get()

    response = run_action(client, DiscoveredEntity, "import_recommended", discovered)
    assert "1 imported." in response.content.decode()
    imported = ImportedEntity.objects.get()
    assert imported.state == "linked"

    run_action(client, ImportedEntity, "unlink", imported)
    imported.refresh_from_db()
    assert imported.state == "unlinked"
    assert Entity.objects.filter(pk=imported.entity_id).exists()


@pytest.mark.django_db
def test_connector_update_through_the_service_keeps_secrets_when_the_provider_is_fixed(
    token_provider, client
):
    connector = services.connector_create(
        name="cloud",
        provider="admin_token",
        auth_kind="api_token",
        secrets={"token": SECRET},
        config={"email": "ops@example.com"},
    )
    page = client.get(admin_url(Connector, "change", connector.pk))
    assert "provider" not in page.context["adminform"].form.fields
