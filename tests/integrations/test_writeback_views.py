"""The write-back pages over real sockets against the Cloud sandbox: the preview (the diff, the
file's presence, unchanged rows, why a row cannot be written), the confirmation that queues
a batch, its progress page, the Writes tab, the entity's Catalog file tab and its notice, and
the controls disabled with the reason (permission, account-level rule, missing scope)."""

import re

import pytest
from django.test import Client
from django.urls import reverse

from catalog.views import entity_url_kwargs
from integrations import services
from integrations.choices import WritebackMode, WritebackState
from integrations.models import DiscoveredEntity, WriteBack
from integrations.providers.writes import FileChange, WriteRequest
from integrations.views import diff_lines
from tests.integrations.api.conftest import make_scope, member_of  # noqa: F401
from tests.integrations.writeback.conftest import (  # noqa: F401
    CLOUD_READ_TOKEN,
    cloud,
    cloud_provider,
    writeback_settings,
)
from tests.integrations.writeback.helpers import imported, synced

pytestmark = pytest.mark.django_db

WRITE_BACK = "integrations.write_back"
EDIT = "integrations.edit_integration"


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _preview_url(integration, *records) -> str:
    query = "&".join(f"discovered={record.pk}" for record in records)
    return f"{reverse('integrations:write-back-preview', args=[integration.pk])}?{query}"


def _entity_tab(entity) -> str:
    return reverse("integrations-entity:writes", kwargs=entity_url_kwargs(entity))


def _text(response) -> str:
    return response.content.decode()


@pytest.fixture
def writer(make_user):
    return make_user("writer", WRITE_BACK, EDIT)


@pytest.fixture
def provider(cloud):  # noqa: F811
    return cloud_provider(cloud)


def test_diff_lines_are_classified_for_their_colours():
    diff = "--- /dev/null\n+++ b/catalog-info.yaml\n@@ -0,0 +1 @@\n+kind: x\n-old\n same\n"
    assert [kind for kind, _ in diff_lines(diff)] == ["meta", "meta", "hunk", "add", "del", "same"]


def test_the_preview_shows_the_diff_and_why_a_row_cannot_be_written(cloud, provider, writer):  # noqa: F811
    (record,) = imported(cloud, provider)
    waiting = DiscoveredEntity.objects.filter(
        integration=provider.integration, state="discovered"
    ).first()
    response = _client(writer).get(_preview_url(provider.integration, record, waiting))
    assert response.status_code == 200
    page = _text(response)
    assert 'class="diff-meta">--- /dev/null' in page
    assert 'class="diff-add">+kind: Component' in page
    assert "No such file yet" in page and "New file" in page
    # The row that is not imported says so, and only the writable one is confirmed.
    assert f"{waiting.name} is not imported" in page
    assert f'name="discovered" value="{record.pk}"' in page
    assert f'name="discovered" value="{waiting.pk}"' not in page
    assert f'name="expected-{record.pk}" value="none"' in page
    assert "Write to 1 repository" in page
    # A direct commit is offered only where the integration's admin picked it.
    commit = re.search(r'<input type="radio" name="mode" value="commit"[^>]*>', page).group(0)
    assert "disabled" in commit and "Not allowed by this integration" in page
    assert WriteBack.objects.count() == 0  # a preview writes nothing


def test_an_unchanged_file_is_shown_as_unchanged_and_not_offered(cloud, provider, writer):  # noqa: F811
    (record,) = imported(cloud, provider)
    (preview,) = services.writeback_preview(
        integration=provider.integration, discovered_ids=[record.pk], user=writer
    )
    repo = provider.get_repository(record.external_id)
    provider.write_files(
        WriteRequest(
            repo=repo,
            files=(FileChange(preview.path, preview.proposed),),
            message="Add catalog-info.yaml",
            mode="commit",
        )
    )
    page = _text(_client(writer).get(_preview_url(provider.integration, record)))
    assert "Unchanged" in page and "The file exists" in page
    assert "already exactly what Lantern would write" in page
    assert "Nothing to write" in page
    assert f'name="discovered" value="{record.pk}"' not in page


def test_confirm_queues_a_batch_whose_page_shows_the_pull_request(
    cloud,  # noqa: F811
    provider,
    writer,
    django_capture_on_commit_callbacks,
):
    (record,) = imported(cloud, provider)
    entity = record.imports.get().entity
    client = _client(writer)
    back = _entity_tab(entity)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("integrations:write-back", args=[provider.integration.pk]),
            {"discovered": [record.pk], f"expected-{record.pk}": "none", "next": back},
        )
    assert response.status_code == 302
    write = WriteBack.objects.get()
    assert write.state == WritebackState.SUCCEEDED, (write.error, write.hint)
    assert write.mode == WritebackMode.PULL_REQUEST and write.expected_absent
    assert response["Location"].startswith(
        f"{reverse('integrations:write-back-batch', args=[provider.integration.pk])}"
        f"?id={write.batch_id}"
    )
    batch_page = _text(client.get(response["Location"], follow=True))
    assert "Writing catalog-info.yaml to 1 repository as pull requests." in batch_page
    assert "1 of 1" in batch_page and "Done" in batch_page
    assert f'href="{write.pull_request_url}"' in batch_page
    assert "data-running" not in batch_page  # finished: the page stops refreshing
    assert f'href="{back}"' in batch_page
    # The entity's tab and the integration's Writes tab show the write and its pull request.
    for url in (back, reverse("integrations:writes", args=[provider.integration.pk])):
        page = _text(client.get(url))
        assert f'href="{write.pull_request_url}"' in page and "Open" in page
        assert "writer" in page and "Pull request" in page


def test_the_batch_fragment_refreshes_while_running(cloud, provider, writer):  # noqa: F811
    (record,) = imported(cloud, provider)
    # Without running the task (no on-commit callbacks in this test's transaction).
    batch = services.writeback_request(
        integration=provider.integration, discovered_ids=[record.pk], mode=None, user=writer
    )
    url = reverse("integrations:write-back-batch", args=[provider.integration.pk])
    client = _client(writer)
    page = _text(client.get(url, {"id": batch.pk}))
    assert "data-poll-url" in page and "fragment=1" in page
    fragment = _text(client.get(url, {"id": batch.pk, "fragment": "1"}))
    assert "data-running" in fragment and "0 of 1" in fragment and "<html" not in fragment
    services.writeback_run(batch_id=batch.pk)
    fragment = _text(client.get(url, {"id": batch.pk, "fragment": "1"}))
    assert "data-running" not in fragment and "1 of 1" in fragment
    assert client.get(url, {"id": batch.pk + 1000}).status_code == 404
    assert client.get(url, {"id": "x"}).status_code == 404


def test_a_failed_write_shows_its_error_and_hint_and_a_notice(cloud, provider, writer):  # noqa: F811
    (record,) = imported(cloud, provider)
    entity = record.imports.get().entity
    batch = services.writeback_request(
        integration=provider.integration, discovered_ids=[record.pk], mode=None, user=writer
    )
    WriteBack.objects.filter(batch=batch).update(
        state=WritebackState.FAILED,
        error="catalog-info.yaml was changed upstream by ann in commit abc123",
        hint="Review the change and write again.",
    )
    client = _client(writer)
    tab = _text(client.get(_entity_tab(entity)))
    assert "changed upstream by ann in commit abc123" in tab
    assert "What to do: Review the change and write again." in tab
    overview = _text(client.get(reverse("catalog:entity", kwargs=entity_url_kwargs(entity))))
    assert f"Writing catalog-info.yaml to {record.name} failed" in overview
    assert _entity_tab(entity) in overview


def test_refusals_of_confirm_name_the_field_and_write_nothing(cloud, provider, writer):  # noqa: F811
    synced(provider)
    waiting = DiscoveredEntity.objects.filter(integration=provider.integration).first()
    client = _client(writer)
    url = reverse("integrations:write-back", args=[provider.integration.pk])
    response = client.post(url, {"discovered": [waiting.pk]}, follow=True)
    page = _text(response)
    assert "Nothing was written: discovered_ids: Not imported" in page
    assert response.redirect_chain[-1][0].startswith(
        reverse("integrations:write-back-preview", args=[provider.integration.pk])
    )
    response = client.post(url, {"discovered": [waiting.pk], "mode": "commit"}, follow=True)
    assert "Nothing was written: mode:" in _text(response)
    response = client.post(url, {}, follow=True)
    assert "Select at least one repository" in _text(response)
    assert WriteBack.objects.count() == 0


def test_without_the_permission_the_controls_are_disabled_with_the_reason(
    cloud,  # noqa: F811
    provider,
    make_user,
):
    (record,) = imported(cloud, provider)
    entity = record.imports.get().entity
    editor = make_user("editor", EDIT)
    client = _client(editor)
    pk = provider.integration.pk
    for url in (
        _entity_tab(entity),
        reverse("integrations:imported", args=[pk]),
        reverse("integrations:detail", args=[pk]) + "?state=imported",
    ):
        page = _text(client.get(url))
        assert "You need the permission to write catalog-info.yaml back" in page, url
        assert re.search(r"<button[^>]*disabled[^>]*>Write catalog-info.yaml", page), url
    preview = _text(client.get(_preview_url(provider.integration, record)))
    assert f"You lack the permission {WRITE_BACK}" in preview
    assert re.search(r"<button[^>]*disabled[^>]*>Write to", preview)
    confirm = client.post(reverse("integrations:write-back", args=[pk]), {"discovered": record.pk})
    assert confirm.status_code == 403
    bulk = client.post(
        reverse("integrations:write-back-preview", args=[pk]), {"selected": record.pk}
    )
    assert bulk.status_code == 403
    assert WriteBack.objects.count() == 0


def test_a_connector_without_write_scopes_disables_the_action_naming_the_scope(
    cloud,  # noqa: F811
    writer,
):
    provider = cloud_provider(cloud, token=CLOUD_READ_TOKEN, name="cloud-reader")
    (record,) = imported(cloud, provider)
    entity = record.imports.get().entity
    client = _client(writer)
    tab = _text(client.get(_entity_tab(entity)))
    assert "Connector cloud-reader cannot write" in tab and "repository:write" in tab
    imported_tab = _text(
        client.get(reverse("integrations:imported", args=[provider.integration.pk]))
    )
    assert "repository:write" in imported_tab
    preview = _text(client.get(_preview_url(provider.integration, record)))
    assert "Cannot be written" in preview and "repository:write" in preview


def test_a_scoped_user_sees_an_account_level_integration_read_only(
    cloud,  # noqa: F811
    provider,
    writer,
    make_scope,  # noqa: F811
    member_of,  # noqa: F811
):
    (record,) = imported(cloud, provider)
    member_of(writer, make_scope("alpha"))
    client = _client(writer)
    pk = provider.integration.pk
    page = _text(client.get(reverse("integrations:imported", args=[pk])))
    assert "belongs to the whole account" in page
    assert re.search(r"<button[^>]*disabled[^>]*>Write catalog-info.yaml", page)
    refused = client.post(reverse("integrations:write-back", args=[pk]), {"discovered": record.pk})
    assert refused.status_code == 403 and "belongs to the whole account" in _text(refused)


def test_selected_imported_rows_open_the_preview(cloud, provider, writer):  # noqa: F811
    records = imported(cloud, provider, count=2)
    client = _client(writer)
    pk = provider.integration.pk
    listing = _text(client.get(reverse("integrations:imported", args=[pk])))
    for record in records:
        assert f'value="{record.pk}" form="writeback-form"' in listing
    back = reverse("integrations:imported", args=[pk])
    response = client.post(
        reverse("integrations:write-back-preview", args=[pk]),
        {"selected": [r.pk for r in records], "next": back},
    )
    page = _text(response)
    assert response.status_code == 200
    assert all(f'data-preview="{r.name}"' in page for r in records)
    assert "Write to 2 repositories" in page and f'name="next" value="{back}"' in page
    empty = client.post(reverse("integrations:write-back-preview", args=[pk]), {"next": back})
    assert empty.status_code == 302 and empty["Location"] == back
