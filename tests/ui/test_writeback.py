"""Write-back in a real browser against the Bitbucket Cloud sandbox: from an entity's page, the
preview with its diff, the confirmation, the batch running in process until done, and the pull
request's link back on the entity page. And a reader, who sees the action disabled with the
reason."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from integrations.models import WriteBack
from tests.integrations.writeback.conftest import cloud, cloud_provider, writeback_settings  # noqa: F401
from tests.integrations.writeback.helpers import imported
from tests.ui.conftest import sign_in

pytestmark = pytest.mark.django_db(transaction=True)


def _expect():
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect


def make_user(username: str, *codenames: str) -> tuple[str, str]:
    password = f"pw-{username}-Secret-1"
    user = get_user_model().objects.create_user(username, password=password)
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="integrations", codename__in=codenames)
    )
    return username, password


def entity_tab(page, entity) -> None:
    page.goto(f"/catalog/{entity.namespace}/{entity.kind.lower()}/{entity.name}/")
    page.get_by_role("navigation", name="Entity sections").get_by_role(
        "link", name="Catalog file"
    ).click()


def test_preview_confirm_and_see_the_pull_request_on_the_entity_page(page, screenshot, cloud):  # noqa: F811
    expect = _expect()
    provider = cloud_provider(cloud)
    (record,) = imported(cloud, provider)
    entity = record.imports.get().entity
    sign_in(page, *make_user("ada", "write_back", "edit_integration"))

    entity_tab(page, entity)
    expect(page.get_by_text("No catalog-info.yaml has been written yet.")).to_be_visible()
    page.get_by_role("link", name=f"Write catalog-info.yaml to {record.name}").click()

    # The preview: nothing written yet, the file is new, the diff shows the whole file.
    expect(page.get_by_role("heading", name="Write catalog-info.yaml: preview")).to_be_visible()
    preview = page.locator(f'[data-preview="{record.name}"]')
    expect(preview).to_contain_text("New file")
    expect(preview).to_contain_text("No such file yet")
    diff = preview.locator("pre.diff")
    expect(diff.locator(".diff-meta").first).to_have_text("--- /dev/null")
    expect(diff.locator(".diff-add", has_text=f"name: {entity.name}")).to_be_visible()
    expect(page.get_by_label("Pull request")).to_be_checked()
    expect(page.get_by_label("Direct commit")).to_be_disabled()
    assert WriteBack.objects.count() == 0
    screenshot("writeback-01-preview")

    # Confirm: the batch runs in process; its page shows the outcome.
    page.get_by_role("button", name="Write to 1 repository").click()
    expect(page.locator(".messages")).to_contain_text(
        "Writing catalog-info.yaml to 1 repository as pull requests."
    )
    expect(page.locator("[data-batch-state]")).to_contain_text("1 of 1")
    expect(page.locator("[data-batch-state]")).to_contain_text("Done")
    write = WriteBack.objects.get()
    assert write.pull_request_url, (write.error, write.hint)
    pull_request = page.get_by_role("link", name=f"Pull request #{write.pull_request_id}")
    expect(pull_request).to_have_attribute("href", write.pull_request_url)
    screenshot("writeback-02-batch")

    # Back on the entity page: the write, who made it and the open pull request.
    page.get_by_role("link", name="Back").click()
    expect(page).to_have_url(re.compile(r"/catalog-file$"))
    row = page.locator(f'tr[data-write="{record.name}"]')
    expect(row).to_contain_text("ada")
    expect(row).to_contain_text("Succeeded")
    expect(row).to_contain_text("Open")
    expect(
        row.get_by_role("link", name=f"Pull request #{write.pull_request_id}")
    ).to_have_attribute("href", write.pull_request_url)
    screenshot("writeback-03-entity")


def test_a_reader_sees_the_action_disabled_with_the_reason(page, cloud):  # noqa: F811
    expect = _expect()
    provider = cloud_provider(cloud)
    (record,) = imported(cloud, provider)
    entity = record.imports.get().entity
    sign_in(page, *make_user("bob", "edit_integration"))
    entity_tab(page, entity)
    button = page.get_by_role("button", name=f"Write catalog-info.yaml to {record.name}")
    expect(button).to_be_disabled()
    expect(page.locator("[data-blocked]")).to_contain_text(
        "You need the permission to write catalog-info.yaml back to repositories"
    )
