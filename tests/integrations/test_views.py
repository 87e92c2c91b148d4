"""The integrations UI through Django's test client, against the in-test fake provider."""

import pytest
from django.contrib.auth import get_user_model

from catalog.models import Entity
from integrations import services
from integrations.choices import LinkState
from integrations.engine.sync import integration_sync
from integrations.models import Connector, ImportedEntity, Integration
from tests.integrations.conftest import component_doc

EDIT = "integrations.edit_integration"


@pytest.fixture
def editor_client(client, make_user):
    client.force_login(make_user("editor", EDIT))
    return client


@pytest.fixture
def reader_client(client, make_user):
    client.force_login(make_user("reader"))
    return client


@pytest.fixture
def synced(world, make_integration, make_entities):
    """Three repositories after one sync; ``payments`` matches a catalog entity (merge)."""
    world.add_repo("billing", description="Bills", prs=3, commits=4)
    world.add_repo("payments", description="Pays")
    world.add_repo("search", description="Finds")
    make_entities(component_doc("payments"), component_doc("ledger"))
    integration = make_integration(target={"workspace": "acme"})
    integration_sync(integration_id=integration.pk, trigger="manual")
    integration.refresh_from_db()
    return integration


def discovered_id(integration: Integration, name: str) -> int:
    return integration.discovered.get(name=name).pk


def texts(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def follow_messages(client, response) -> list[str]:
    return texts(client.get(response["Location"]))


# --- list and wizard --------------------------------------------------------------------------


def test_integrations_need_a_signed_in_user(client, db):
    assert client.get("/integrations/").status_code == 302


def test_cards_show_name_provider_state_and_counts(editor_client, synced):
    body = editor_client.get("/integrations/").content.decode()
    assert "acme" in body and "fake" in body and "Enabled" in body
    assert "<strong>3</strong>" in body  # discovered
    assert "Add integration" in body


def test_the_wizard_creates_a_connector_inline_and_an_integration(
    editor_client, world, django_capture_on_commit_callbacks
):
    world.add_repo("billing")
    world.add_repo("search")
    start = editor_client.get("/integrations/new/")
    assert start["Location"] == "/integrations/new/setup/"
    page = editor_client.get("/integrations/new/setup/")
    assert "Setup &amp; Connectivity" in page.content.decode()

    # A connector for Bitbucket Cloud, created inline; its secret is stored encrypted.
    response = editor_client.post(
        "/integrations/new/setup/",
        {
            "action": "create_connector",
            "name": "acme",
            "connector-name": "cloud",
            "connector-provider": "bitbucket_cloud",
            "connector-auth_kind": "workspace_access_token",
            "connector-secret": "s3cret-token",
        },
    )
    assert response.status_code == 302
    cloud = Connector.objects.get(name="cloud")
    assert cloud.secrets == {"token": "s3cret-token"}
    page = editor_client.get("/integrations/new/setup/")
    assert "Connector cloud created." in texts(page)
    assert page.context["form"]["connector"].value() == str(cloud.pk)
    assert "s3cret-token" not in page.content.decode()

    # Test the connection of the fake connector, then go on.
    fake = services.connector_create(
        name="fake", provider="fake", auth_kind="none", config={"world": world.name}
    )
    setup = {"name": "acme", "connector": fake.pk, "workspace": "acme"}
    response = editor_client.post("/integrations/new/setup/", {**setup, "action": "test"})
    assert "Connection OK: 2 repositories visible" in texts(response)
    fake.refresh_from_db()
    assert fake.health == "up"
    response = editor_client.post("/integrations/new/setup/", {**setup, "action": "next"})
    assert response["Location"] == "/integrations/new/mapping/"

    mapping_page = editor_client.get("/integrations/new/mapping/")
    body = mapping_page.content.decode()
    assert "locked after creation" in body
    assert 'value="links.html.href"' in body  # the provider's default mappings
    response = editor_client.post(
        "/integrations/new/mapping/",
        {
            "action": "next",
            "registration": "register_and_merge",
            "entity_kind": "Component",
            "entity_type": "website",
            "rule_ingested": ["name", ""],
            "rule_operator": ["equals", "equals"],
            "rule_catalog": ["metadata.name", ""],
            "mapping_path": ["metadata.description"],
            "mapping_expression": ["description"],
            "secondary_kinds": ["pull_requests"],
        },
    )
    assert response["Location"] == "/integrations/new/advanced/"
    response = editor_client.post(
        "/integrations/new/advanced/",
        {"action": "next", "update_frequency": "60", "start_date": "2024-01-01", "labels": "a, b"},
    )
    assert response["Location"] == "/integrations/new/confirm/"
    confirm = editor_client.get("/integrations/new/confirm/")
    assert "every 60 minutes" in confirm.content.decode()

    refused = editor_client.post("/integrations/new/confirm/", {"action": "create"})
    assert "Tick the confirmation box" in refused.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = editor_client.post(
            "/integrations/new/confirm/", {"action": "create", "confirm": "on", "sync_now": "on"}
        )
    integration = Integration.objects.get(name="acme")
    assert response["Location"] == f"/integrations/{integration.pk}/"
    assert integration.entity_type == "website"
    assert integration.secondary_kinds == ["pull_requests"]
    assert integration.update_frequency == 60
    assert integration.labels == ["a", "b"]
    assert [m.catalog_path for m in integration.field_mappings.all()] == ["metadata.description"]
    assert integration.discovered.count() == 2  # the first sync ran
    messages = follow_messages(editor_client, response)
    assert "Integration acme created and enabled." in messages
    assert "wizard" not in str(editor_client.session.get("integration_wizard", ""))


def test_wizard_steps_show_clear_errors(editor_client, connector):
    response = editor_client.post("/integrations/new/setup/", {"action": "next", "name": ""})
    assert response.status_code == 200
    assert "This field is required." in response.content.decode()
    assert "Choose a connector, or create one below." in response.content.decode()
    editor_client.post(
        "/integrations/new/setup/", {"action": "next", "name": "x", "connector": connector.pk}
    )
    response = editor_client.post(
        "/integrations/new/mapping/",
        {
            "registration": "register",
            "entity_kind": "not a kind",
            "rule_ingested": ["name[["],
            "rule_operator": ["equals"],
            "rule_catalog": ["metadata.name"],
        },
    )
    body = response.content.decode()
    assert "is not a valid kind" in body
    assert "Correlation rule 1 (ingested)" in body
    assert response.context["form"].rule_rows() == [
        {"ingested": "name[[", "operator": "equals", "catalog": "metadata.name"}
    ]


def test_later_wizard_steps_send_you_back_to_the_first_undone_one(editor_client, db):
    response = editor_client.get("/integrations/new/confirm/")
    assert response["Location"] == "/integrations/new/setup/"


def test_a_failed_connection_test_says_why(editor_client, db):
    cloud = services.connector_create(
        name="cloud",
        provider="bitbucket_cloud",
        auth_kind="workspace_access_token",
        secrets={"token": "t"},
        base_url="http://127.0.0.1:9/2.0",
    )
    response = editor_client.post(
        "/integrations/new/setup/",
        {"action": "test", "name": "x", "connector": cloud.pk, "workspace": "acme"},
    )
    (message,) = texts(response)
    assert message.startswith("Connection failed:")


# --- the integration page ---------------------------------------------------------------------


def test_discovered_shows_recommendations_and_suggested_entities(editor_client, synced):
    response = editor_client.get(f"/integrations/{synced.pk}/")
    body = response.content.decode()
    assert [row.name for row in response.context["page"]] == ["billing", "payments", "search"]
    assert 'value="component:default/payments"' in body  # the suggested merge target
    assert "Import selected entities" in body
    assert "Auto-import future discovered entities" in body


def test_register_with_a_changed_type(editor_client, synced):
    billing = discovered_id(synced, "billing")
    response = editor_client.post(
        f"/integrations/{synced.pk}/import", {"register": billing, f"type-{billing}": "website"}
    )
    assert follow_messages(editor_client, response) == [
        "Registered billing as component:default/billing."
    ]
    assert Entity.objects.get(name="billing").spec_type == "website"


def test_merge_into_a_chosen_entity(editor_client, synced):
    search = discovered_id(synced, "search")
    response = editor_client.post(
        f"/integrations/{synced.pk}/import",
        {"merge": search, f"entity-{search}": "component:default/ledger"},
    )
    assert follow_messages(editor_client, response) == [
        "Merged search into component:default/ledger."
    ]
    imported = ImportedEntity.objects.get(discovered_id=search)
    assert (imported.entity.name, imported.action) == ("ledger", "MERGE")


def test_merge_into_a_missing_entity_says_so(editor_client, synced):
    search = discovered_id(synced, "search")
    response = editor_client.post(
        f"/integrations/{synced.pk}/import", {"merge": search, f"entity-{search}": "nope"}
    )
    assert follow_messages(editor_client, response) == [
        "Could not merge search: there is no catalog entity component:default/nope"
    ]


def test_import_selected_follows_each_rows_recommendation(editor_client, synced):
    ids = [discovered_id(synced, name) for name in ("billing", "payments", "search")]
    response = editor_client.post(
        f"/integrations/{synced.pk}/import", {"bulk": "1", "selected": ids}
    )
    assert follow_messages(editor_client, response) == ["Imported 3 entities."]
    actions = dict(ImportedEntity.objects.values_list("discovered__name", "action").order_by("pk"))
    assert actions == {"billing": "REGISTER", "payments": "MERGE", "search": "REGISTER"}


def test_import_selected_without_a_selection_warns(editor_client, synced):
    response = editor_client.post(f"/integrations/{synced.pk}/import", {"bulk": "1"})
    assert follow_messages(editor_client, response) == [
        "Select at least one discovered entity to import."
    ]


def test_auto_import_toggle(editor_client, synced):
    response = editor_client.post(f"/integrations/{synced.pk}/auto-import", {"auto_import": "on"})
    synced.refresh_from_db()
    assert synced.auto_import
    assert "imported automatically" in follow_messages(editor_client, response)[0]
    editor_client.post(f"/integrations/{synced.pk}/auto-import", {})
    synced.refresh_from_db()
    assert not synced.auto_import


def test_sync_button_queues_a_sync(editor_client, synced, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = editor_client.post(f"/integrations/{synced.pk}/sync")
    assert follow_messages(editor_client, response) == ["Sync of acme queued."]
    assert synced.runs.filter(trigger="manual").count() == 2  # tasks run in process here


def test_imported_tab_and_unlink(editor_client, synced):
    billing = discovered_id(synced, "billing")
    editor_client.post(f"/integrations/{synced.pk}/import", {"register": billing})
    imported = ImportedEntity.objects.get()
    page = editor_client.get(f"/integrations/{synced.pk}/imported/")
    body = page.content.decode()
    assert "Registered" in body and str(imported.entity.uid) in body
    assert 'href="/catalog/default/component/billing/"' in body
    response = editor_client.post(f"/integrations/{synced.pk}/imported/{imported.pk}/unlink")
    imported.refresh_from_db()
    assert imported.state == LinkState.UNLINKED
    assert "Unlinked component:default/billing" in follow_messages(editor_client, response)[0]
    assert Entity.objects.filter(name="billing").exists()


def test_runs_tab_lists_runs_and_serves_the_live_fragment(editor_client, synced):
    page = editor_client.get(f"/integrations/{synced.pk}/runs/")
    assert "Succeeded" in page.content.decode()
    fragment = editor_client.get(f"/integrations/{synced.pk}/runs/", {"fragment": "1"})
    assert fragment.content.decode().lstrip().startswith('<div class="table-wrap">')


def test_webhooks_tab_shows_the_url(editor_client, synced, settings):
    settings.LANTERN_PUBLIC_URL = "https://lantern.example"
    body = editor_client.get(f"/integrations/{synced.pk}/webhooks/").content.decode()
    assert f"https://lantern.example/webhooks/fake/{synced.pk}" in body
    assert "No deliveries received yet." in body


def test_configuration_edits_through_the_service(editor_client, synced):
    page = editor_client.get(f"/integrations/{synced.pk}/configuration/")
    assert page.context["mapping"]["secondary_kinds"].field.disabled
    data = {
        "name": "acme-renamed",
        "connector": synced.connector_id,
        "workspace": "acme",
        "registration": "register",
        "entity_kind": "Component",
        "entity_type": "library",
        "rule_ingested": ["name"],
        "rule_operator": ["equals"],
        "rule_catalog": ["metadata.name"],
        "mapping_path": ["metadata.description"],
        "mapping_expression": ["description"],
        "update_frequency": "360",
    }
    response = editor_client.post(f"/integrations/{synced.pk}/configuration/", data)
    assert follow_messages(editor_client, response) == ["Settings of acme-renamed saved."]
    synced.refresh_from_db()
    assert (synced.name, synced.entity_type, synced.update_frequency) == (
        "acme-renamed",
        "library",
        360,
    )
    bad = editor_client.post(
        f"/integrations/{synced.pk}/configuration/", {**data, "update_frequency": "7"}
    )
    assert "Select a valid choice" in bad.content.decode()


def test_suspend_resume_and_delete_each_ask_first(editor_client, synced):
    confirm = editor_client.get(f"/integrations/{synced.pk}/suspend")
    assert "Suspend acme?" in confirm.content.decode()
    editor_client.post(f"/integrations/{synced.pk}/suspend")
    synced.refresh_from_db()
    assert synced.state == "suspended"
    refused = editor_client.post(f"/integrations/{synced.pk}/sync")
    assert "suspended" in follow_messages(editor_client, refused)[0]
    editor_client.post(f"/integrations/{synced.pk}/resume")
    synced.refresh_from_db()
    assert synced.state == "enabled"
    wrong = editor_client.post(f"/integrations/{synced.pk}/delete", {"confirm_name": "nope"})
    assert "Type the integration" in wrong.content.decode()
    assert Integration.objects.filter(pk=synced.pk).exists()
    response = editor_client.post(f"/integrations/{synced.pk}/delete", {"confirm_name": "acme"})
    assert response["Location"] == "/integrations/"
    assert not Integration.objects.filter(pk=synced.pk).exists()


def test_pull_request_and_commit_tabs_of_an_imported_entity(editor_client, synced):
    billing = discovered_id(synced, "billing")
    editor_client.post(f"/integrations/{synced.pk}/import", {"register": billing})
    prs = editor_client.get("/catalog/default/component/billing/pull-requests")
    assert len(prs.context["page"]) == 3
    assert "billing change 1" in prs.content.decode()
    open_only = editor_client.get(
        "/catalog/default/component/billing/pull-requests", {"state": "open"}
    )
    assert {pr.state for pr in open_only.context["page"]} == {"OPEN"}
    commits = editor_client.get("/catalog/default/component/billing/commits")
    assert len(commits.context["page"]) == 4
    assert editor_client.get("/catalog/default/component/payments/commits").status_code == 200


# --- permissions ------------------------------------------------------------------------------

MUTATING_CONTROLS = (
    "Add integration",
    "Sync now",
    "Import selected entities",
    ">Register</button>",
    ">Merge</button>",
    "Auto-import future discovered entities",
    ">Unlink</button>",
    "Save settings",
    "Danger Zone",
)


def test_without_edit_permission_no_mutating_control_is_rendered(reader_client, synced):
    billing = discovered_id(synced, "billing")
    services.integration_update(integration=synced, auto_import=False)
    from integrations.engine.imports import discovered_import

    discovered_import(discovered=synced.discovered.get(pk=billing))
    pages = [
        "/integrations/",
        f"/integrations/{synced.pk}/",
        f"/integrations/{synced.pk}/imported/",
        f"/integrations/{synced.pk}/runs/",
        f"/integrations/{synced.pk}/webhooks/",
        f"/integrations/{synced.pk}/configuration/",
    ]
    for url in pages:
        response = reader_client.get(url)
        assert response.status_code == 200, url
        body = response.content.decode()
        for control in MUTATING_CONTROLS:
            assert control not in body, (url, control)


def test_without_edit_permission_every_change_is_403(reader_client, synced):
    imported_pk = 1
    urls = [
        f"/integrations/{synced.pk}/sync",
        f"/integrations/{synced.pk}/import",
        f"/integrations/{synced.pk}/auto-import",
        f"/integrations/{synced.pk}/imported/{imported_pk}/unlink",
        f"/integrations/{synced.pk}/suspend",
        f"/integrations/{synced.pk}/resume",
        f"/integrations/{synced.pk}/delete",
        f"/integrations/{synced.pk}/configuration/",
        "/integrations/new/setup/",
    ]
    for url in urls:
        assert reader_client.post(url, {"confirm_name": "acme"}).status_code == 403, url
    assert reader_client.get("/integrations/new/setup/").status_code == 403
    assert reader_client.get(f"/integrations/{synced.pk}/delete").status_code == 403
    synced.refresh_from_db()
    assert synced.state == "enabled" and synced.name == "acme"


def test_integrations_of_other_scopes_are_404(editor_client, synced, db):
    from catalog.models import Scope

    synced.scope = Scope.objects.create(name="Other", slug="other", kind="account")
    synced.save()
    assert editor_client.get(f"/integrations/{synced.pk}/").status_code == 404
    assert editor_client.post(f"/integrations/{synced.pk}/sync").status_code == 404


def test_superusers_see_everything(client, synced):
    client.force_login(get_user_model().objects.create_superuser("root", password="pw-root-123"))
    assert client.get(f"/integrations/{synced.pk}/").status_code == 200
