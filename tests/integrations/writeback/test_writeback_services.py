"""Write-back through the services over real sockets against both sandboxes: the preview, the
request (validated as a whole), the task that writes each repository and records its outcome,
the pull request's state followed by the sync, and refusals that name their reason."""

import logging

import pytest
import yaml
from django.core.exceptions import PermissionDenied, ValidationError

from catalog.models import Entity
from integrations import services
from integrations.api.serializers import ImportedEntitySerializer
from integrations.choices import PullRequestState, WritebackState
from integrations.models import DiscoveredEntity, WriteBack
from integrations.providers import registry
from integrations.selectors import imported_list
from tests.integrations.writeback.conftest import (
    CLOUD_READ_TOKEN,
    CLOUD_WRITE_TOKEN,
    cloud_provider,
    control,
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
    (link,) = imported_list(integration=provider.integration)
    assert link.declared is False  # no catalog-info.yaml yet
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
    # The Imported view (UI and API) shows the entity as declared in the repository.
    (link,) = imported_list(integration=provider.integration)
    assert link.declared is True
    assert ImportedEntitySerializer(link).data["declared_in_repository"] is True
    (again,) = services.writeback_preview(
        integration=provider.integration, discovered_ids=[record.pk], user=writer
    )
    assert again.unchanged and again.diff == ""


def test_the_pull_request_state_follows_the_sync_once_merged(
    cloud, writer, django_capture_on_commit_callbacks
):
    provider = cloud_provider(cloud)
    records = imported(cloud, provider, 2)
    batch = _request(provider, records, writer, django_capture_on_commit_callbacks)
    merged, declined = batch.writes.order_by("pk")
    assert merged.pull_request_state == declined.pull_request_state == PullRequestState.OPEN
    with control(cloud) as knobs:
        for write in (merged, declined):
            repo = world_repo(cloud, write.discovered)
            action = "merge" if write is merged else "decline"
            response = knobs.post(
                f"/repositories/{repo.full_name}/pullrequests/{write.pull_request_id}/{action}",
                json={},
            )
            assert response.status_code == 200, response.text
    synced(provider, full=True)
    merged.refresh_from_db()
    declined.refresh_from_db()
    assert merged.pull_request_state == PullRequestState.MERGED
    assert declined.pull_request_state == PullRequestState.DECLINED
    assert merged.state == declined.state == WritebackState.SUCCEEDED


def test_a_missing_write_scope_disables_the_preview_and_refuses_the_request(cloud, writer):
    provider = cloud_provider(cloud, token=CLOUD_READ_TOKEN, name="cloud-reader")
    (record,) = imported(cloud, provider)
    ok, detail = services.writeback_access(integration=provider.integration)
    assert not ok and "repository:write" in detail
    (preview,) = services.writeback_preview(
        integration=provider.integration, discovered_ids=[record.pk], user=writer
    )
    assert not preview.allowed and "repository:write" in preview.reason
    assert preview.diff  # the preview still shows what a write would change
    with pytest.raises(ValidationError) as refused:
        services.writeback_request(
            integration=provider.integration, discovered_ids=[record.pk], mode=None, user=writer
        )
    assert "repository:write" in refused.value.message_dict["connector"][0]
    assert not WriteBack.objects.exists()


def test_requests_are_refused_naming_the_field(cloud, writer, make_user):
    provider = cloud_provider(cloud)
    (record,) = imported(cloud, provider)
    waiting = DiscoveredEntity.objects.filter(integration=provider.integration).exclude(
        pk=record.pk
    )[0]
    integration = provider.integration

    def refused(**values):
        values = {"integration": integration, "mode": None, "user": writer, **values}
        with pytest.raises(ValidationError) as error:
            services.writeback_request(**values)
        return error.value.message_dict

    assert "999999" in refused(discovered_ids=[record.pk, 999999])["discovered_ids"][0]
    assert waiting.name in refused(discovered_ids=[waiting.pk])["discovered_ids"][0]
    assert "non-empty list" in refused(discovered_ids=[])["discovered_ids"][0]
    assert "writeback_mode" in refused(discovered_ids=[record.pk], mode="commit")["mode"][0]
    assert "pull_request or commit" in refused(discovered_ids=[record.pk], mode="force")["mode"][0]
    with pytest.raises(PermissionDenied) as denied:
        services.writeback_request(
            integration=integration,
            discovered_ids=[record.pk],
            mode=None,
            user=make_user("plain"),
        )
    assert "integrations.write_back" in str(denied.value)
    (preview,) = services.writeback_preview(
        integration=integration, discovered_ids=[waiting.pk], user=writer
    )
    assert not preview.allowed and "not imported" in preview.reason
    assert not WriteBack.objects.exists()


def test_a_file_changed_upstream_since_the_preview_is_reported_not_overwritten(
    dc, writer, django_capture_on_commit_callbacks
):
    provider = dc_provider(dc)
    (record,) = imported(dc, provider)
    (preview,) = services.writeback_preview(
        integration=provider.integration, discovered_ids=[record.pk], user=writer
    )
    repo = world_repo(dc, record)
    with control(dc) as knobs:
        changed = knobs.post(
            f"/repositories/{repo.workspace}/{repo.slug}/upstream-change",
            json={"path": "catalog-info.yaml", "content": "kind: Theirs\n"},
        ).json()
    batch = _request(
        provider,
        [record],
        writer,
        django_capture_on_commit_callbacks,
        expected={record.pk: preview.current_blob},
    )
    write = batch.writes.get()
    assert batch.state == "failed" and (batch.done, batch.failed) == (1, 1)
    assert write.state == WritebackState.FAILED
    # The commit git names (the control API answered the world's id before git saw it).
    assert repo.commits[repo.branches[repo.mainbranch]].message == changed["message"]
    assert repo.branches[repo.mainbranch][:12] in write.error
    assert "changed upstream" in write.hint
    assert "write again" in write.hint
    head = repo.commits[repo.branches[repo.mainbranch]]
    assert repo.read_file(head, "catalog-info.yaml") == b"kind: Theirs\n"


@pytest.fixture
def big_cloud():
    from sandbox import SandboxServer
    from tests.sandbox.fixtures import cloud_world_factory

    world = cloud_world_factory(repos=112, prs_per_repo=0, commits_per_repo=1, projects=2)
    workspace = next(iter(world.workspaces))
    world.credentials.add_access_token(
        CLOUD_WRITE_TOKEN,
        workspace=workspace,
        scopes=("repository:write", "pullrequest:write", "project", "webhook"),
        name="writer",
    )
    with SandboxServer(world, kind="cloud") as server:
        server.workspace = workspace
        yield server


def test_a_bulk_write_of_100_repositories_runs_as_a_task_with_progress_and_outcomes(
    big_cloud, writer, django_capture_on_commit_callbacks, caplog
):
    # Without pull requests and commits to read, the sync and 100 writes fit an hour's budget.
    connector = services.connector_create(
        name="bulk",
        provider="bitbucket_cloud",
        auth_kind="workspace_access_token",
        base_url=big_cloud.api_url,
        secrets={"token": CLOUD_WRITE_TOKEN},
    )
    integration = services.integration_create(
        connector=connector,
        name="bulk",
        target={"workspace": big_cloud.workspace},
        secondary_kinds=[],
    )
    provider = registry.for_integration(integration)
    records = imported(big_cloud, provider, 100, absent=False)
    changed, forbidden = records[10], records[20]
    previews = services.writeback_preview(
        integration=provider.integration, discovered_ids=[r.pk for r in records], user=writer
    )
    assert all(p.allowed for p in previews)
    blob = {p.discovered.pk: p.current_blob for p in previews}
    with control(big_cloud) as knobs:
        repo = world_repo(big_cloud, changed)
        knobs.post(
            f"/repositories/{repo.full_name}/upstream-change",
            json={"path": "catalog-info.yaml", "content": "kind: Theirs\n"},
        )
        repo = world_repo(big_cloud, forbidden)
        knobs.post(
            f"/repositories/{repo.full_name}/read-traps",
            json={"kind": "files", "action": "forbid", "status": 403},
        )
    seen = []
    from integrations.engine import writeback as engine_writeback

    original = engine_writeback._progress

    def watch(batch, **kwargs):
        original(batch, **kwargs)
        seen.append((batch.done, batch.failed, batch.state))

    caplog.set_level(logging.DEBUG)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine_writeback, "_progress", watch)
        batch = _request(
            provider, records, writer, django_capture_on_commit_callbacks, expected=blob
        )
    assert (batch.state, batch.total, batch.done, batch.failed) == ("failed", 100, 100, 2)
    assert [done for done, _, _ in seen[:100]] == list(range(1, 101))
    assert seen[0][2] == "running" and seen[-1][2] == "failed"
    outcomes = {w.discovered_id: w for w in batch.writes.all()}
    assert "changed upstream" in outcomes[changed.pk].hint
    assert outcomes[forbidden.pk].state == "failed" and outcomes[forbidden.pk].hint
    succeeded = [w for w in outcomes.values() if w.state == "succeeded"]
    assert len(succeeded) == 98 and all(w.pull_request_url for w in succeeded)
    # Credentials appear in no record and no log line, at DEBUG.
    text = caplog.text + "".join(w.error + w.hint for w in outcomes.values())
    assert CLOUD_WRITE_TOKEN not in text
    # A redelivered task skips what is finished: no new commit or pull request anywhere.
    heads = {r.pk: dict(world_repo(big_cloud, r).branches) for r in records}
    pulls = {r.pk: len(world_repo(big_cloud, r).pull_requests) for r in records}
    again = services.writeback_run(batch_id=batch.pk)
    assert (again.state, again.done, again.failed) == ("failed", 100, 2)
    assert heads == {r.pk: dict(world_repo(big_cloud, r).branches) for r in records}
    assert pulls == {r.pk: len(world_repo(big_cloud, r).pull_requests) for r in records}


def test_selectors_cost_a_fixed_number_of_queries(
    cloud, writer, django_capture_on_commit_callbacks, django_assert_num_queries
):
    from integrations.selectors import writebacks_for_entity, writebacks_for_integration

    provider = cloud_provider(cloud)
    records = imported(cloud, provider, 3)
    for _ in range(2):
        _request(provider, records, writer, django_capture_on_commit_callbacks)
    entity = records[0].imports.get().entity
    with django_assert_num_queries(1):
        rows = [
            (w.discovered.name, w.entity.ref, w.requested_by.username)
            for w in writebacks_for_integration(integration=provider.integration)
        ]
    assert len(rows) == 6
    superuser = type(writer).objects.create_superuser("root", password="pw-unused-123")
    with django_assert_num_queries(1):
        rows = [
            (w.discovered.name, w.integration.name)
            for w in writebacks_for_entity(entity=entity, user=superuser)
        ]
    assert len(rows) == 2


def test_reviewers_are_asked_on_the_pull_request_and_refused_for_a_direct_commit(
    server, writer, django_capture_on_commit_callbacks
):
    server, kind = server
    provider = PROVIDERS[kind](server)
    (record,) = imported(server, provider)
    reviewer = next(iter(server.world.accounts.values()))

    batch = _request(
        provider,
        [record],
        writer,
        django_capture_on_commit_callbacks,
        reviewers=[reviewer.nickname],
    )

    write = batch.writes.get()
    assert write.state == WritebackState.SUCCEEDED, (write.error, write.hint)
    assert batch.reviewers == [reviewer.nickname]
    pr = world_repo(server, record).pull_requests[int(write.pull_request_id)]
    assert pr.reviewers == [reviewer.uuid]
    services.integration_update(integration=provider.integration, writeback_mode="commit")
    with pytest.raises(ValidationError) as refused:
        services.writeback_request(
            integration=provider.integration,
            discovered_ids=[record.pk],
            mode="commit",
            user=writer,
            reviewers=[reviewer.nickname],
        )
    assert "reviewers" in refused.value.message_dict
