"""The Done-when walk in a real browser, against the Bitbucket Cloud sandbox: sign in, create a
connector and an integration through the wizard, sync, register, merge, bulk-import, toggle
auto-import, read an entity and its YAML, unlink, suspend and re-enable. And a reader who sees
no mutating control and is refused when posting directly."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from catalog.services import entities_upsert
from integrations.models import ImportedEntity, Integration
from tests.sandbox.fixtures import SANDBOX_TOKEN
from tests.ui.conftest import sign_in

pytestmark = pytest.mark.django_db(transaction=True)


def _expect():
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect


def make_user(username: str, *, edit: bool) -> tuple[str, str]:
    password = f"pw-{username}-Secret-1"
    user = get_user_model().objects.create_user(username, password=password)
    if edit:
        user.user_permissions.add(
            Permission.objects.get(
                content_type__app_label="integrations", codename="edit_integration"
            )
        )
    return username, password


def component(name: str, **metadata) -> dict:
    return {
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "Component",
        "metadata": {"name": name, **metadata},
        "spec": {"type": "service", "lifecycle": "production", "owner": "team-a"},
    }


def nav(page, name: str, *, section: str = "Main"):
    """A link of a navigation landmark: the main menu or a page's tabs."""
    return page.get_by_role("navigation", name=section).get_by_role("link", name=name, exact=True)


def row(page, name: str):
    return page.locator(f'tr[data-name="{name}"]')


def test_admin_walks_from_wizard_to_suspend(page, screenshot, cloud_sandbox, settings):
    expect = _expect()
    settings.LANTERN_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    # billing-lib exists in the catalog (correlation recommends a merge); legacy-search is the
    # entity a person chooses for search-lib.
    entities_upsert(
        documents=[component("billing-lib"), component("legacy-search", title="Legacy search")]
    )
    messages = page.locator(".messages")

    sign_in(page, *make_user("ada", edit=True))
    screenshot("01-home")

    # --- the wizard: Setup & Connectivity, with a connector created inline -------------------
    nav(page, "Integrations").click()
    page.get_by_role("link", name="Add integration").click()
    expect(page.get_by_role("heading", name="Setup & Connectivity")).to_be_visible()
    page.get_by_label("Integration name").fill("acme")
    page.get_by_text("Create a new connector").click()
    page.get_by_label("Connector name").fill("acme-cloud")
    page.get_by_label("Provider").select_option("bitbucket_cloud")
    page.get_by_label("Authentication").select_option("workspace_access_token")
    page.get_by_label("Token or secret").fill(SANDBOX_TOKEN)
    page.get_by_label("API base URL").fill(cloud_sandbox.api_url)
    page.get_by_role("button", name="Create connector").click()
    expect(messages).to_contain_text("Connector acme-cloud created.")
    expect(page.get_by_label("Connector", exact=True)).to_have_value(re.compile(r"\d+"))
    expect(page.get_by_label("Integration name")).to_have_value("acme")
    page.get_by_label("Workspace").fill("acme")
    page.get_by_role("button", name="Test connection").click()
    expect(messages).to_contain_text("Connection OK: Connected to workspace acme")
    screenshot("02-wizard-setup")
    page.get_by_role("button", name="Next: Mapping & Correlation").click()

    # --- Mapping & Correlation ------------------------------------------------------------
    expect(page.get_by_role("heading", name="Mapping & Correlation")).to_be_visible()
    expect(page.get_by_text("Secondary kinds are locked after creation.")).to_be_visible()
    expect(page.get_by_label("Ingested data path").first).to_have_value("name")
    expect(page.get_by_label("Catalog YAML path").first).to_have_value("metadata.name")
    page.get_by_label("Merge", exact=True).check()
    expect(page.get_by_label("Type (optional)", exact=True)).to_be_disabled()
    page.get_by_label("Register & Merge").check()
    expect(page.get_by_label("Type (optional)", exact=True)).to_be_enabled()
    # Kind and Type are chosen from a list; "Other…" reveals the text input.
    expect(page.get_by_label("Other kind (optional)")).to_be_hidden()
    page.get_by_label("Kind", exact=True).select_option("Other…")
    expect(page.get_by_label("Other kind (optional)")).to_be_visible()
    page.get_by_label("Kind", exact=True).select_option("Component")
    screenshot("03-wizard-mapping")
    page.get_by_role("button", name="Next: Advanced Settings").click()

    # --- Advanced Settings, Confirm & Enable ------------------------------------------------
    expect(page.get_by_role("heading", name="Advanced Settings")).to_be_visible()
    page.get_by_label("Update frequency").select_option(label="1h")
    page.get_by_role("button", name="Next: Confirm & Enable").click()
    expect(page.get_by_role("heading", name="Confirm & Enable")).to_be_visible()
    expect(page.locator("dl.facts")).to_contain_text("every 60 minutes")
    screenshot("04-wizard-confirm")
    page.get_by_label(re.compile("I have checked these settings")).check()
    page.get_by_label("Start the first sync now").uncheck()
    page.get_by_role("button", name="Create and enable").click()
    expect(messages).to_contain_text("Integration acme created and enabled.")
    integration = Integration.objects.get(name="acme")
    assert integration.update_frequency == 60

    # --- sync and the recommendations -------------------------------------------------------
    expect(page.get_by_text("Nothing waiting to be imported.")).to_be_visible()
    page.get_by_role("button", name="Sync now").click()
    expect(messages).to_contain_text("Sync of acme queued")
    expect(page.locator("tbody tr")).to_have_count(24)
    expect(row(page, "billing-lib").locator("td").nth(2)).to_have_text("Merge")
    expect(row(page, "billing-lib").get_by_label("Entity to merge billing-lib into")).to_have_value(
        "component:default/billing-lib"
    )
    expect(row(page, "ledger-web").locator("td").nth(2)).to_have_text("Register")
    screenshot("05-discovered")

    # Register one with a changed type.
    row(page, "ledger-web").get_by_label("Type for ledger-web").fill("website")
    page.get_by_role("button", name="Register ledger-web").click()
    expect(messages).to_contain_text("Registered ledger-web as component:default/ledger-web.")

    # Merge one into an entity chosen with the search picker.
    picker = row(page, "search-lib").get_by_label("Entity to merge search-lib into")
    picker.fill("legacy")
    expect(
        page.locator('#entity-options option[value="component:default/legacy-search"]')
    ).to_have_count(1)
    picker.fill("component:default/legacy-search")
    page.get_by_role("button", name="Merge search-lib").click()
    expect(messages).to_contain_text("Merged search-lib into component:default/legacy-search.")

    # Bulk import several by their recommendations.
    for name in ("billing-lib", "feeds-api", "identity-ui"):
        page.get_by_label(f"Select {name}", exact=True).check()
    page.get_by_role("button", name="Import selected entities").click()
    expect(messages).to_contain_text("Imported 3 entities.")
    expect(page.locator("tbody tr")).to_have_count(24 - 5)
    assert dict(ImportedEntity.objects.values_list("discovered__name", "action")) == {
        "ledger-web": "REGISTER",
        "search-lib": "MERGE",
        "billing-lib": "MERGE",
        "feeds-api": "REGISTER",
        "identity-ui": "REGISTER",
    }

    # Auto-import toggle (submits itself).
    page.get_by_label("Auto-import future discovered entities").check()
    expect(messages).to_contain_text("Future discovered entities will be imported automatically.")
    expect(page.get_by_label("Auto-import future discovered entities")).to_be_checked()

    # --- imported, and an entity with its tabs ------------------------------------------------
    nav(page, "Imported", section="Integration sections").click()
    expect(page.locator("tbody tr")).to_have_count(5)
    expect(row(page, "legacy-search")).to_contain_text("Merged")
    expect(row(page, "ledger-web")).to_contain_text("Registered")
    screenshot("06-imported")
    page.get_by_role("link", name="component:default/ledger-web").click()
    expect(page.get_by_role("heading", name="ledger-web", exact=True)).to_be_visible()
    expect(page.locator("dl.facts").first).to_contain_text("website")
    expect(page.get_by_role("link", name="View source")).to_have_attribute(
        "href", re.compile(r"ledger-web")
    )
    screenshot("07-entity-overview")
    nav(page, "Pull requests", section="Entity sections").click()
    expect(page.locator("tbody tr").first).to_contain_text("#")
    screenshot("08-entity-pull-requests")
    nav(page, "Commits", section="Entity sections").click()
    expect(page.locator("tbody tr").first.locator("td.mono")).not_to_be_empty()
    nav(page, "YAML", section="Entity sections").click()
    ingested = page.get_by_label("Ingested properties (YAML)")
    expect(page.get_by_role("heading", name="Ingested Properties")).to_be_visible()
    expect(ingested).to_contain_text("integration_name: acme")
    expect(ingested).to_contain_text("action: REGISTER")
    expect(ingested).to_contain_text("BitbucketCloud:")
    expect(page.get_by_label("Entity document (YAML)")).to_contain_text("type: website")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download YAML").first.click()
    assert download.value.suggested_filename == "component-default-ledger-web.yaml"
    screenshot("09-entity-yaml")

    # --- unlink -----------------------------------------------------------------------------
    page.goto(f"/integrations/{integration.pk}/imported/")
    row(page, "ledger-web").get_by_label("Actions for ledger-web").click()
    row(page, "ledger-web").get_by_role("button", name="Unlink").click()
    expect(messages).to_contain_text("Unlinked component:default/ledger-web")
    expect(page.locator("tbody tr")).to_have_count(4)

    # --- runs and webhooks ------------------------------------------------------------------
    nav(page, "Runs", section="Integration sections").click()
    expect(page.locator("tbody tr").first).to_contain_text("Succeeded")
    screenshot("10-runs")
    nav(page, "Webhooks", section="Integration sections").click()
    expect(page.locator("#webhook-url")).to_contain_text(
        f"/webhooks/bitbucket-cloud/{integration.pk}"
    )
    screenshot("11-webhooks")

    # --- suspend and re-enable, each behind a confirmation ------------------------------------
    nav(page, "Configuration", section="Integration sections").click()
    screenshot("12-configuration")
    page.get_by_role("link", name="Suspend…").click()
    expect(page.get_by_role("heading", name="Suspend acme?")).to_be_visible()
    page.get_by_role("button", name="Suspend acme").click()
    expect(messages).to_contain_text("acme is suspended")
    expect(page.get_by_role("heading", name=re.compile("acme"))).to_contain_text("Suspended")
    expect(page.get_by_role("button", name="Sync now")).to_be_disabled()
    page.get_by_role("link", name="Re-enable…").click()
    page.get_by_role("button", name="Re-enable acme").click()
    expect(messages).to_contain_text("acme is enabled again")
    expect(page.get_by_role("heading", name=re.compile("acme"))).to_contain_text("Enabled")

    # --- the catalog list, filtered by the integration --------------------------------------
    nav(page, "Catalog").click()
    page.get_by_label("Integration").select_option("acme")
    page.get_by_role("button", name="Apply filters").click()
    expect(page.locator("tbody tr")).to_have_count(4)
    screenshot("13-catalog-list")


def test_a_reader_sees_no_mutating_control_and_is_refused(page, screenshot, live_server):
    expect = _expect()
    make_user("ada", edit=True)
    from integrations import services

    connector = services.connector_create(
        name="cloud",
        provider="bitbucket_cloud",
        auth_kind="workspace_access_token",
        secrets={"token": "unused"},
    )
    integration = services.integration_create(
        connector=connector, name="acme", target={"workspace": "acme"}
    )
    sign_in(page, *make_user("rita", edit=False))
    nav(page, "Integrations").click()
    expect(page.get_by_role("link", name="acme")).to_be_visible()
    expect(page.get_by_role("link", name="Add integration")).to_have_count(0)
    page.get_by_role("link", name="acme").click()
    for control in ("Sync now", "Import selected entities"):
        expect(page.get_by_role("button", name=control)).to_have_count(0)
    expect(page.get_by_label("Auto-import future discovered entities")).to_have_count(0)
    nav(page, "Configuration", section="Integration sections").click()
    expect(page.get_by_role("button", name="Save settings")).to_have_count(0)
    expect(page.get_by_text("Danger Zone")).to_have_count(0)
    screenshot("20-reader-configuration")

    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    for action in ("sync", "suspend", "delete", "import"):
        response = page.request.post(
            f"{live_server.url}/integrations/{integration.pk}/{action}",
            headers={"X-CSRFToken": csrf, "Referer": live_server.url},
            form={"confirm_name": "acme"},
        )
        assert response.status == 403, action
    integration.refresh_from_db()
    assert integration.state == "enabled"
