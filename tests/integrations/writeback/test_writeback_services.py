"""Write-back through the services over real sockets against both sandboxes: the preview, the
request (validated as a whole), the task that writes each repository and records its outcome,
the pull request's state followed by the sync, and refusals that name their reason."""


import pytest
import yaml

from catalog.models import Entity
from integrations import services
from integrations.choices import PullRequestState, WritebackState
from tests.integrations.writeback.conftest import (
    cloud_provider,
    dc_provider,
)
from tests.integrations.writeback.helpers import imported, synced, world_repo

pytestmark = pytest.mark.django_db

PROVIDERS = {"cloud": cloud_provider, "dc": dc_provider}


@pytest.fixture
def writer(make_user):
    return make_user("writer", "integrations.write_back")


@pytest.fixture(params=["cloud", "dc"])
def server(request):
    return request.getfixturevalue(request.param), request.param


def _request(provider, records, user, captured, **values):
    with captured(execute=True):
        batch = services.writeback_request(
            integration=provider.integration,
            discovered_ids=[r.pk for r in records],
            mode=values.pop("mode", None),
            user=user,
            **values,
        )
    batch.refresh_from_db()
    return batch


def test_a_pull_request_through_the_service(server, writer, django_capture_on_commit_callbacks):
    server, kind = server
    provider = PROVIDERS[kind](server)
    (record,) = imported(server, provider)
    (preview,) = services.writeback_preview(
        integration=provider.integration, discovered_ids=[record.pk], user=writer
    )
    assert preview.allowed and preview.reason == ""
    assert preview.current is None and preview.diff.startswith("--- /dev/null")
    assert yaml.safe_load(preview.proposed)["metadata"]["name"] == preview.entity.name

    batch = _request(provider, [record], writer, django_capture_on_commit_callbacks)
    assert (batch.state, batch.total, batch.done, batch.failed) == ("succeeded", 1, 1, 0)
    write = batch.writes.get()
    assert write.state == WritebackState.SUCCEEDED, (write.error, write.hint)
    assert write.mode == "pull_request" and write.requested_by == writer
    assert write.entity == preview.entity and write.finished_at is not None
    assert write.branch == f"lantern/catalog-info-{preview.entity.name}"
    assert write.pull_request_id and write.pull_request_url
    assert write.pull_request_state == PullRequestState.OPEN
    repo = world_repo(server, record)
    pr = repo.pull_requests[int(write.pull_request_id)]
    assert pr.state == "OPEN" and pr.source_branch == write.branch
    assert "declares its catalog entity" in pr.description
    # The default branch is untouched until the pull request is merged.
    head = repo.commits[repo.branches[repo.mainbranch]]
    assert repo.read_file(head, "catalog-info.yaml") is None
    assert repo.read_file(repo.commits[write.commit], "catalog-info.yaml") == (
        preview.proposed.encode()
    )


def test_a_direct_commit_lands_and_reimports_to_the_same_entity(
    server, writer, django_capture_on_commit_callbacks
):
    server, kind = server
    provider = PROVIDERS[kind](server)
    services.integration_update(integration=provider.integration, writeback_mode="commit")
    (record,) = imported(server, provider)
    entity = record.imports.get().entity
    batch = _request(provider, [record], writer, django_capture_on_commit_callbacks, mode="commit")
    write = batch.writes.get()
    assert write.state == WritebackState.SUCCEEDED, (write.error, write.hint)
    assert write.commit and not write.pull_request_id and write.pull_request_state == ""
    repo = world_repo(server, record)
    assert repo.branches[repo.mainbranch] == write.commit

    synced(provider, full=True)
    record.refresh_from_db()
    # The next sync reads the file (enrichment) into the same entity, which stays linked.
    written = yaml.safe_load(repo.read_file(repo.commits[write.commit], "catalog-info.yaml"))
    info = record.data["catalog_info"]
    assert "error" not in info and info["spec"]
    assert info["spec"] == {
        k: written["spec"][k]
        for k in ("type", "owner", "lifecycle", "system")
        if k in written["spec"]
    }
    assert record.imports.get().entity_id == entity.pk
    assert Entity.objects.filter(name=entity.name).count() == 1
    (again,) = services.writeback_preview(
        integration=provider.integration, discovered_ids=[record.pk], user=writer
    )
    assert again.unchanged and again.diff == ""
