"""The integrations UI through Django's test client, against the in-test fake provider."""

from datetime import UTC

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
    assert body.count("`name[[` is not a valid JMESPath expression: unexpected “[”") == 1
    assert response.context["form"].rule_rows() == [
        {"ingested": "name[[", "operator": "equals", "catalog": "metadata.name"}
    ]


def _mapping_post(editor_client, connector, **rows):
    editor_client.post(
        "/integrations/new/setup/", {"action": "next", "name": "x", "connector": connector.pk}
    )
    return editor_client.post(
        "/integrations/new/mapping/",
        {"action": "next", "registration": "register", "entity_kind": "Component", **rows},
    )


def test_a_jmespath_error_is_shown_once_in_words_under_its_row(editor_client, connector):
    response = _mapping_post(
        editor_client,
        connector,
        rule_ingested=["name", "name[?"],
        rule_operator=["equals", "equals"],
        rule_catalog=["metadata.name", "metadata.name"],
    )
    body = response.content.decode()
    message = (
        "`name[?` is not a valid JMESPath expression: it ends inside a filter (at character 6)"
    )
    assert body.count(message) == 1
    assert "Expecting" not in body and "Incomplete expression" not in body
    # The second row's ingested input is marked and points at the message just below it.
    row = body[body.index('value="name[?"') :]
    assert row.startswith(
        'value="name[?" placeholder="Ingested data path" aria-label="Ingested data path"'
        ' aria-invalid="true" aria-describedby="rule-1-error">'
    )
    error = row[row.index('id="rule-1-error"') :]
    assert error.startswith(f'id="rule-1-error">{message}')
    assert '<code class="expression-excerpt" aria-hidden="true">name[<mark>?</mark></code>' in row
    assert body.count("aria-invalid") == 1  # the valid first row is not marked
    assert "1 row below needs attention: see the message under each." in body
    assert response.context["form"].row_errors.keys() == {("rule", 1)}


def test_an_emptied_catalog_path_is_refused_on_its_row(editor_client, connector):
    response = _mapping_post(
        editor_client,
        connector,
        rule_ingested=["name"],
        rule_operator=["equals"],
        rule_catalog=["metadata.name"],
        mapping_path=["metadata.description", "", "metadata.title"],
        mapping_expression=["description", "links.html.href", ""],
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert body.count("A catalog path is required.") == 1
    assert 'id="mapping-1-error">A catalog path is required.</p>' in body
    assert 'aria-describedby="mapping-1-error"' in body
    assert 'id="mapping-2-error">An expression is required.</p>' in body
    assert "2 rows below need attention: see the message under each." in body


def test_kind_and_type_are_chosen_from_the_catalogs_or_typed_under_other(
    editor_client, connector, make_entities
):
    make_entities(component_doc("ledger", type="batch-job"))
    editor_client.post(
        "/integrations/new/setup/", {"action": "next", "name": "x", "connector": connector.pk}
    )
    body = editor_client.get("/integrations/new/mapping/").content.decode()
    assert '<select name="entity_kind" data-other="id_entity_kind_other"' in body
    assert '<option value="Component" selected>Component</option>' in body
    assert '<option value="Template">Template</option>' in body
    assert '<option value="batch-job">batch-job</option>' in body  # from the catalog
    assert '<option value="service" selected>service</option>' in body
    assert body.count('<option value="__other__">Other…</option>') == 2
    rules = {"rule_ingested": ["name"], "rule_operator": ["equals"], "rule_catalog": ["x"]}
    other = {"entity_kind": "__other__", "entity_type": "__other__", **rules}
    refused = _mapping_post(editor_client, connector, **other, entity_kind_other="not a kind")
    assert refused.context["form"].errors["entity_kind"] == [
        "'not a kind' is not a valid kind (letters and digits)."
    ]
    assert refused.context["form"].errors["entity_type"] == [
        "Type the type under Other type, or choose one."
    ]
    accepted = _mapping_post(
        editor_client, connector, **other, entity_kind_other="Widget", entity_type_other="cron"
    )
    assert accepted["Location"] == "/integrations/new/advanced/"
    editor_client.post("/integrations/new/advanced/", {"action": "next", "update_frequency": "60"})
    confirm = editor_client.get("/integrations/new/confirm/").content.decode()
    assert "<dt>Kind / type</dt><dd>Widget / cron</dd>" in confirm


def test_a_saved_kind_the_catalog_does_not_know_starts_as_other(make_user):
    from integrations.forms import MappingForm

    form = MappingForm(
        initial={"entity_kind": "Widget", "entity_type": "service"}, user=make_user("u")
    )
    html = str(form["entity_kind"]) + str(form["entity_kind_other"])
    assert '<option value="__other__" selected>Other…</option>' in html
    assert 'value="Widget"' in html
    assert form["entity_type"].value() == "service"


def test_creating_a_connector_shows_only_the_connectors_errors(editor_client, db):
    response = editor_client.post(
        "/integrations/new/setup/",
        {"action": "create_connector", "name": "kept", "connector-name": ""},
    )
    body = response.content.decode()
    assert "Choose a connector, or create one below." not in body  # the setup form's
    assert response.context["form"]["name"].value() == "kept"
    assert not response.context["form"].is_bound
    assert response.context["connector_form"].errors["name"] == ["This field is required."]


def test_the_unticked_confirmation_is_said_once(editor_client, connector):
    _mapping_post(
        editor_client,
        connector,
        rule_ingested=["name"],
        rule_operator=["equals"],
        rule_catalog=["metadata.name"],
    )
    editor_client.post("/integrations/new/advanced/", {"action": "next", "update_frequency": "60"})
    response = editor_client.post("/integrations/new/confirm/", {"action": "create"})
    assert response.content.decode().count("Tick the confirmation box") == 1


def test_pages_name_providers_by_their_display_name(editor_client, db):
    cloud = services.connector_create(
        name="cloud",
        provider="bitbucket_cloud",
        auth_kind="workspace_access_token",
        secrets={"token": "t"},
    )
    for url in ("/integrations/connectors/", f"/integrations/connectors/{cloud.pk}/"):
        body = editor_client.get(url).content.decode()
        assert "Bitbucket Cloud" in body, url
        assert "bitbucket_cloud" not in body, url
    setup = editor_client.get("/integrations/new/setup/").content.decode()
    assert ">cloud (Bitbucket Cloud)</option>" in setup


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
    assert follow_messages(editor_client, response)[0].startswith("Sync of acme queued")
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


def test_configuration_sets_the_write_back_mode(editor_client, synced):
    page = editor_client.get(f"/integrations/{synced.pk}/configuration/").content.decode()
    assert 'name="writeback_mode"' in page
    data = {
        "name": synced.name,
        "connector": synced.connector_id,
        "workspace": "acme",
        "registration": synced.registration,
        "entity_kind": "Component",
        "entity_type": "service",
        "rule_ingested": ["name"],
        "rule_operator": ["equals"],
        "rule_catalog": ["metadata.name"],
        "update_frequency": str(synced.update_frequency),
        "writeback_mode": "commit",
    }
    editor_client.post(f"/integrations/{synced.pk}/configuration/", data)
    synced.refresh_from_db()
    assert synced.writeback_mode == "commit"
    refused = editor_client.post(
        f"/integrations/{synced.pk}/configuration/", {**data, "writeback_mode": "force"}
    )
    assert "Select a valid choice" in refused.content.decode()
    synced.refresh_from_db()
    assert synced.writeback_mode == "commit"


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
    "Run a full sync",
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


# --- processing errors, conflicts, gone sources, full sync (issue 15) -------------------------
# Rows are written directly (the engine's own tests prove how they come about); the views are
# what is tested here.

DELETE = "catalog.delete_entity"
PR_404 = {
    "message": "Bitbucket answered 404 for /repositories/acme/billing/pullrequests",
    "reason": "not found (404)",
    "hint": "The repository was deleted or renamed since it was listed.",
    "since": "2026-01-02T03:04:05+00:00",
    "at": "2026-01-03T03:04:05+00:00",
    "run_id": None,
}


@pytest.fixture
def records(make_integration, make_entities):
    """An integration (never synced) with a healthy record, one whose pull requests failed,
    one whose name the catalog entity ``payments`` already holds."""
    from datetime import datetime

    from integrations.models import DiscoveredEntity

    integration = make_integration(target={"workspace": "acme"})
    (holder,) = make_entities(component_doc("payments"))
    now = datetime.now(UTC)

    def record(name: str, **values) -> DiscoveredEntity:
        return DiscoveredEntity.objects.create(
            integration=integration,
            external_id=f"{{{name}}}",
            name=name,
            kind="Component",
            type="service",
            data={
                "uuid": f"{{{name}}}",
                "name": name,
                "description": "",
                "links": {"html": {"href": f"https://bitbucket.example/acme/{name}"}},
                "project": {"key": "ACME"},
            },
            last_seen_at=now,
            **values,
        )

    record("search")
    record(
        "billing",
        processing_errors={"pull_requests": PR_404},
        error_since=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    record("payments", recommended_action="conflict", name_holder=holder)
    integration.holder = holder
    return integration


def record_rows(response) -> list[str]:
    return [row.name for row in response.context["page"]]


def test_needs_attention_lists_only_failed_records_with_stage_message_hint_and_since(
    editor_client, records
):
    response = editor_client.get(f"/integrations/{records.pk}/", {"state": "error"})
    body = response.content.decode()
    assert record_rows(response) == ["billing"]
    assert "Needs attention (1)" in body  # the filter's option
    assert "<strong>Pull requests</strong> — not found (404)" in body
    assert PR_404["message"] in body
    assert "What to do: The repository was deleted or renamed" in body
    assert 'datetime="2026-01-02T03:04:05+00:00"' in body  # since when
    # Not in the plain list's "needs attention" filter: the healthy and conflict rows.
    everything = editor_client.get(f"/integrations/{records.pk}/", {"state": "all"})
    assert record_rows(everything) == ["billing", "payments", "search"]


def test_the_needs_attention_count_is_a_badge_on_the_discovered_tab_of_every_tab(
    editor_client, records
):
    for tab in ("", "imported/", "runs/", "webhooks/"):
        body = editor_client.get(f"/integrations/{records.pk}/{tab}").content.decode()
        assert 'Discovered <span class="badge danger" data-needs-attention' in body, tab
        assert "1 record needs attention" in body, tab


def test_no_badge_when_nothing_needs_attention(editor_client, records):
    records.discovered.update(processing_errors={}, error_since=None)
    body = editor_client.get(f"/integrations/{records.pk}/").content.decode()
    assert "data-needs-attention" not in body
    response = editor_client.get(f"/integrations/{records.pk}/", {"state": "error"})
    assert "No discovered entity needs attention." in response.content.decode()


def test_a_name_conflict_names_its_holder_instead_of_offering_register_or_merge(
    editor_client, make_user, records
):
    body = editor_client.get(f"/integrations/{records.pk}/").content.decode()
    assert (
        'Name taken by <a href="/catalog/default/component/payments/">'
        "component:default/payments</a>" in body
    )
    assert 'aria-label="Register payments"' not in body
    assert 'aria-label="Merge payments"' not in body
    assert 'aria-label="Select payments"' not in body  # not importable in bulk either
    assert 'aria-label="Register search"' in body
    # Readers see who holds the name as well.
    editor_client.force_login(make_user("reader"))
    body = editor_client.get(f"/integrations/{records.pk}/").content.decode()
    assert "Name taken by" in body and "/catalog/default/component/payments/" in body


def test_the_discovered_list_costs_the_same_statements_whatever_the_page_holds(
    editor_client, records, django_assert_num_queries
):
    """Session, user, the user's scopes (header), the integration with its counts (needs
    attention and the last full run's requests as subqueries), rules, mappings, the user's
    and groups' permissions, last run, one count, one page (suggested entity and name holder
    joined), the scopes again (header), whether the user is limited to scopes (an
    account-level integration is read-only to such a user): 13."""
    from datetime import datetime

    from integrations.models import DiscoveredEntity

    def statements(params: dict) -> int:
        with django_assert_num_queries(13) as captured:
            assert editor_client.get(f"/integrations/{records.pk}/", params).status_code == 200
        return len(captured)

    small = statements({"state": "all"}), statements({"state": "error"})
    now = datetime.now(UTC)
    DiscoveredEntity.objects.bulk_create(
        DiscoveredEntity(
            integration=records,
            external_id=f"more-{i}",
            name=f"more-{i:02}",
            kind="Component",
            last_seen_at=now,
            recommended_action="conflict" if i % 2 else "register",
            name_holder=records.holder if i % 2 else None,
            processing_errors={"refresh": PR_404} if i % 3 else {},
            error_since=now if i % 3 else None,
        )
        for i in range(45)
    )
    assert (statements({"state": "all"}), statements({"state": "error"})) == small


def test_runs_tab_shows_a_partial_run_with_its_errors_grouped_and_its_unchanged_count(
    editor_client, records
):
    from integrations.models import SyncRun

    SyncRun.objects.create(
        integration=records,
        trigger="manual",
        state="partial",
        unchanged=17,
        errors=3,
        error_summary=[
            {
                "stage": "pull_requests",
                "reason": "not found (404)",
                "hint": "The repository was deleted or renamed since it was listed.",
                "count": 2,
                "examples": ["billing", "ledger"],
            },
            {
                "stage": "import",
                "reason": "invalid entity",
                "hint": "Fix the field mapping.",
                "count": 1,
                "examples": ["~jdoe-tools"],
            },
        ],
    )
    body = editor_client.get(f"/integrations/{records.pk}/runs/").content.decode()
    assert '<span class="badge warn">Partial</span>' in body
    assert "<td>17</td>" in body
    assert '<span class="badge danger">3</span>' in body
    assert "3 records failed" in body
    assert "<strong>2 × Pull requests</strong>: not found (404)" in body
    assert "e.g. billing, ledger" in body
    assert "<strong>1 × Import</strong>: invalid entity" in body
    assert "What to do: Fix the field mapping." in body
    fragment = editor_client.get(f"/integrations/{records.pk}/runs/", {"fragment": 1})
    assert "Partial" in fragment.content.decode()


@pytest.fixture
def gone_link(records):
    """``search`` registered, then no longer listed (gone since 2026-02-03)."""
    from datetime import datetime

    from integrations.engine.imports import discovered_import

    record = records.discovered.get(name="search")
    imported = discovered_import(discovered=record)
    record.refresh_from_db()
    record.state = "gone"
    record.gone_at = datetime(2026, 2, 3, 10, 0, tzinfo=UTC)
    record.save()
    return imported


def test_imported_tab_marks_and_filters_links_whose_source_is_gone(
    editor_client, records, gone_link
):
    from integrations.engine.imports import discovered_import

    discovered_import(discovered=records.discovered.get(name="billing"))
    linked = editor_client.get(f"/integrations/{records.pk}/imported/")
    assert sorted(row.entity.name for row in linked.context["page"]) == ["billing", "search"]
    body = linked.content.decode()
    assert body.count("data-source-gone") == 1
    assert "Repository gone since" in body and "2026-02-03 10:00" in body
    gone = editor_client.get(f"/integrations/{records.pk}/imported/", {"state": "gone"})
    assert [row.entity.name for row in gone.context["page"]] == ["search"]
    assert '<option value="gone" selected>Source gone</option>' in gone.content.decode()


def test_the_imported_list_costs_the_same_statements_whatever_the_page_holds(
    editor_client, records, gone_link, django_assert_num_queries
):
    from integrations.engine.imports import discovered_import

    for params in ({}, {"state": "gone"}):
        with django_assert_num_queries(13):
            editor_client.get(f"/integrations/{records.pk}/imported/", params)
    discovered_import(discovered=records.discovered.get(name="billing"))
    for params in ({}, {"state": "gone"}):
        with django_assert_num_queries(13):
            editor_client.get(f"/integrations/{records.pk}/imported/", params)


def test_the_entity_page_of_a_gone_source_has_a_banner_with_unlink_and_delete(
    client, make_user, records, gone_link
):
    client.force_login(make_user("both", EDIT, DELETE))
    for tab in ("", "relationships", "yaml", "pull-requests", "commits"):
        body = client.get(f"/catalog/default/component/search/{tab}").content.decode()
        assert "Source repository gone since 2026-02-03 10:00 UTC" in body, tab
    body = client.get("/catalog/default/component/search/").content.decode()
    unlink = f"/integrations/{records.pk}/imported/{gone_link.pk}/unlink"
    assert f'action="{unlink}"' in body
    assert 'action="/catalog/default/component/search/delete"' in body
    assert 'name="confirm" required' in body  # Delete asks for the box ticked

    response = client.post(unlink, {"next": "/catalog/default/component/search/"})
    assert response["Location"] == "/catalog/default/component/search/"
    gone_link.refresh_from_db()
    assert gone_link.state == LinkState.UNLINKED
    assert "Source repository gone" not in client.get(response["Location"]).content.decode()


def test_the_gone_banner_offers_only_the_actions_the_user_may_take(
    client, make_user, records, gone_link
):
    client.force_login(make_user("reader"))
    body = client.get("/catalog/default/component/search/").content.decode()
    assert "Source repository gone since" in body
    assert "/unlink" not in body and "/delete" not in body
    client.force_login(make_user("deleter", DELETE))
    body = client.get("/catalog/default/component/search/").content.decode()
    assert "/unlink" not in body and 'action="/catalog/default/component/search/delete"' in body


def test_unlink_goes_back_only_to_pages_of_this_site(editor_client, records, gone_link):
    response = editor_client.post(
        f"/integrations/{records.pk}/imported/{gone_link.pk}/unlink",
        {"next": "https://evil.example/"},
    )
    assert response["Location"] == f"/integrations/{records.pk}/imported/"


def test_deleting_from_the_banner_needs_the_permission_and_the_confirmation(
    client, make_user, records, gone_link
):
    url = "/catalog/default/component/search/delete"
    anonymous = client.post(url, {"confirm": "on"})
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/accounts/login/")
    client.force_login(make_user("editor", EDIT))
    assert client.post(url, {"confirm": "on"}).status_code == 403
    client.force_login(make_user("deleter", DELETE))
    unconfirmed = client.post(url, {})
    assert unconfirmed["Location"] == "/catalog/default/component/search/"
    assert follow_messages(client, unconfirmed) == [
        "Tick the confirmation box to delete component:default/search."
    ]
    assert Entity.objects.filter(name="search").exists()
    confirmed = client.post(url, {"confirm": "on"})
    assert confirmed["Location"] == "/catalog/"
    assert not Entity.objects.filter(name="search").exists()
    assert client.get(url).status_code == 405


def test_the_entity_page_says_when_its_last_refresh_failed_and_what_to_do(editor_client, records):
    from integrations.engine.imports import discovered_import

    record = records.discovered.get(name="search")
    discovered_import(discovered=record)
    refresh_error = {
        **PR_404,
        "message": "field mapping metadata.labels produced an invalid label value '~jdoe'",
        "reason": "invalid entity",
        "hint": "Change the mapping of metadata.labels, then sync again.",
    }
    record.processing_errors = {"refresh": refresh_error}
    record.error_since = "2026-01-02T03:04:05+00:00"
    record.save()
    body = editor_client.get("/catalog/default/component/search/").content.decode()
    assert (
        "acme could not be refreshed since 2026-01-02 03:04 UTC: what is shown may be out of date"
        in body
    )
    assert "invalid label value" in body
    assert "What to do: Change the mapping of metadata.labels, then sync again." in body
    assert f'href="/integrations/{records.pk}/?state=error"' in body
    # A healthy entity has no notice.
    assert "data-entity-notice" not in (
        editor_client.get("/catalog/default/component/payments/").content.decode()
    )


def test_full_sync_asks_first_with_what_it_costs(editor_client, records):
    from integrations.models import SyncRun

    body = editor_client.get(f"/integrations/{records.pk}/").content.decode()
    # Never synced fully: estimated from the three known repositories.
    assert "A full sync costs about 7 requests (estimated)" in body
    assert "for 3 known repositories" in body and "notices deletions" in body
    SyncRun.objects.create(integration=records, trigger="schedule", mode="full", requests=1234)
    SyncRun.objects.filter(integration=records).update(state="succeeded")
    body = editor_client.get(f"/integrations/{records.pk}/runs/").content.decode()
    assert "about 1,234 requests (the last full sync&#x27;s)" in body
    assert 'name="full" value="1"' in body and "Run a full sync" in body


def test_full_sync_on_cloud_names_the_connectors_hourly_budget(records):
    from integrations.views import full_sync_cost

    records.discovered_count, records.last_full_requests = 3, None
    records.provider = "bitbucket_cloud"
    assert "of the connector&#x27;s" not in full_sync_cost(records)
    assert "of the connector's ~1,000/hour budget" in full_sync_cost(records)
    records.connector.config = {"requests_per_hour": 5000}
    assert "~5,000/hour budget" in full_sync_cost(records)


def test_full_sync_posts_a_full_listing_request(
    editor_client, records, world, django_capture_on_commit_callbacks
):
    from integrations.models import SyncRun

    with django_capture_on_commit_callbacks(execute=True):
        response = editor_client.post(
            f"/integrations/{records.pk}/sync",
            {"full": "1", "next": f"/integrations/{records.pk}/"},
        )
    assert response["Location"] == f"/integrations/{records.pk}/"
    assert follow_messages(editor_client, response)[0].startswith("Full sync of acme queued")
    run = SyncRun.objects.get(integration=records)
    assert run.trigger == "manual" and run.mode == "full"


def test_full_sync_needs_the_edit_permission(client, make_user, records):
    url = f"/integrations/{records.pk}/sync"
    anonymous = client.post(url, {"full": "1"})
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/accounts/login/")
    client.force_login(make_user("reader", DELETE))
    assert client.post(url, {"full": "1"}).status_code == 403
    assert not records.runs.exists()


def test_the_entity_pages_notices_cost_the_same_statements_whatever_the_links(
    client, make_user, make_integration, records, gone_link, django_assert_num_queries
):
    """One query reads every link of the entity with its record and integration (and one
    whether the user is limited to scopes, who may not unlink an account-level link). The
    Overview's Delivery metrics card reads the entity's metrics (it has none)."""
    from datetime import datetime

    from integrations.engine.imports import discovered_import
    from integrations.models import DiscoveredEntity

    client.force_login(make_user("both", EDIT, DELETE))
    url = "/catalog/default/component/search/"
    with django_assert_num_queries(11) as one_link:
        assert client.get(url).content.decode().count("data-entity-notice") == 1
    other = make_integration("other", target={"workspace": "other"})
    record = DiscoveredEntity.objects.create(
        integration=other,
        external_id="{search-2}",
        name="search",
        kind="Component",
        data={
            "uuid": "{search-2}",
            "name": "search",
            "links": {"html": {"href": "https://bitbucket.example/other/search"}},
            "project": {"key": "OTHER"},
        },
        last_seen_at=datetime.now(UTC),
        processing_errors={"commits": PR_404},
        error_since=datetime.now(UTC),
    )
    discovered_import(discovered=record, action="merge", entity=gone_link.entity)
    with django_assert_num_queries(len(one_link)):
        body = client.get(url).content.decode()
    assert body.count("data-entity-notice") == 2
    assert "other could not read its commits since 2026-01-02 03:04 UTC" in body


def test_imported_tab_names_the_merged_repository_and_the_entity_it_went_into(
    editor_client, synced
):
    search = discovered_id(synced, "search")
    editor_client.post(
        f"/integrations/{synced.pk}/import",
        {"merge": search, f"entity-{search}": "component:default/ledger"},
    )
    ledger = Entity.objects.get(name="ledger")
    body = editor_client.get(f"/integrations/{synced.pk}/imported/").content.decode()
    assert '<th scope="col">Fake repository</th>' in body
    # The fake's records keep no web URL: the name stands alone.
    assert '<td data-repository>search <span class="badge info">Merged</span>' in body
    record = synced.discovered.get(name="search")
    record.data = {**record.data, "url": "https://bitbucket.org/acme/search"}
    record.save(update_fields=["data"])
    body = editor_client.get(f"/integrations/{synced.pk}/imported/").content.decode()
    assert (
        '<td data-repository><a href="https://bitbucket.org/acme/search" rel="noopener">search</a>'
        ' <span class="badge info">Merged</span>'
    ) in body
    assert (
        '<td data-entity><a href="/catalog/default/component/ledger/">component:default/ledger</a>'
        f'<span class="sub mono">{ledger.uid}</span>'
    ) in body
