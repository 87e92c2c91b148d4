"""Failure isolation per repository, on Bitbucket Cloud and Data Center over real sockets: a
repository deleted between the listing and its pull-request read, or one whose pull requests,
commits or catalog-info.yaml answer 403, is recorded on that repository (stage, message, hint)
and the run goes on with the others, ending ``partial`` with the reasons grouped; the next run
tries the failed repositories first, and a success clears the error. Credentials refused (401)
still fail the whole run.
"""

import pytest

from integrations.choices import DiscoveredState, SyncState
from integrations.models import Commit, DiscoveredEntity, PullRequest
from tests.integrations.engine.conftest import sync

pytestmark = pytest.mark.django_db

REPOS = 6


@pytest.fixture(params=["cloud", "dc"])
def bitbucket(request, bitbucket_factory):
    return bitbucket_factory(request.param, repos=REPOS, prs=2, commits=2)


def repositories(bitbucket) -> list:
    """The world's repositories that have pull requests and commits to read (a generated world
    has empty ones too, whose reads are never made)."""
    return sorted(
        (
            repo
            for repo in bitbucket.server.world.iter_repositories()
            if repo.mainbranch and repo.pull_requests and repo.commits
        ),
        key=lambda repo: repo.slug,
    )


def record_of(integration, repo) -> DiscoveredEntity:
    rows = DiscoveredEntity.objects.filter(integration=integration)
    return next(row for row in rows if row.data.get("slug") == repo.slug)


def test_a_repository_whose_pull_requests_are_forbidden_fails_alone(bitbucket):
    forbidden, *others = repositories(bitbucket)
    bitbucket.server.world.forbid(forbidden, kind="pull_requests", status=403)
    integration = bitbucket.integration()

    run = sync(integration)

    assert run.state == SyncState.PARTIAL, (run.state, run.error)
    assert run.errors == 1
    assert [(g["stage"], g["count"]) for g in run.error_summary] == [("pull_requests", 1)]
    assert run.error_summary[0]["reason"] == "not permitted (403)"
    assert "REPO_READ" in run.error_summary[0]["hint"]
    row = record_of(integration, forbidden)
    assert row.needs_attention
    assert set(row.processing_errors) == {"pull_requests"}
    assert row.processing_errors["pull_requests"]["run_id"] == run.pk
    # Everything else was ingested: the other repositories' pull requests and every commit.
    assert PullRequest.objects.filter(discovered=row).count() == 0
    assert others
    for repo in others:
        count = PullRequest.objects.filter(discovered=record_of(integration, repo)).count()
        assert count == len(repo.pull_requests)
    # Its commits were still read, and every other repository's.
    for repo in [forbidden, *others]:
        assert Commit.objects.filter(discovered=record_of(integration, repo)).exists()
    assert (
        DiscoveredEntity.objects.filter(integration=integration, error_since__isnull=False).count()
        == 1
    )

    # The permission is granted: the next run reads that repository first, and it is healthy.
    bitbucket.server.world.read_traps_clear()
    bitbucket.server.api.log.reset()
    again = sync(integration, full=True)

    assert again.state == SyncState.SUCCEEDED, (again.state, again.error_summary)
    assert again.errors == 0 and again.error_summary == []
    row.refresh_from_db()
    assert not row.needs_attention and row.processing_errors == {}
    assert PullRequest.objects.filter(discovered=row).count() == len(forbidden.pull_requests)


def test_a_repository_deleted_before_its_pull_requests_are_read_is_recorded_then_gone(bitbucket):
    deleted, *others = repositories(bitbucket)
    bitbucket.server.world.delete_on_read(deleted, kind="pull_requests")
    integration = bitbucket.integration()

    run = sync(integration)

    assert run.state == SyncState.PARTIAL, (run.state, run.error)
    assert run.error_summary[0]["reason"] == "not found (404)"
    assert run.error_summary[0]["examples"] == [record_of(integration, deleted).name]
    for repo in others:
        count = PullRequest.objects.filter(discovered=record_of(integration, repo)).count()
        assert count == len(repo.pull_requests)
    # The next full listing no longer finds it: gone, and nothing is left to attend to.
    later = sync(integration, full=True)
    assert later.state == SyncState.SUCCEEDED, (later.state, later.error_summary)
    row = record_of(integration, deleted)
    assert row.state == DiscoveredState.GONE and row.gone_at is not None
    assert not row.needs_attention


@pytest.mark.parametrize("kind", ["commits", "files"])
def test_forbidden_commits_or_catalog_file_fail_only_their_repository(bitbucket, kind):
    forbidden, *_ = repositories(bitbucket)
    bitbucket.server.world.forbid(forbidden, kind=kind, status=403)
    integration = bitbucket.integration()

    run = sync(integration)

    stage = {"commits": "commits", "files": "catalog_file"}[kind]
    assert run.state == SyncState.PARTIAL, (run.state, run.error)
    assert [(g["stage"], g["count"]) for g in run.error_summary] == [(stage, 1)]
    assert set(record_of(integration, forbidden).processing_errors) == {stage}
    # Every repository was still discovered and imported.
    assert (
        DiscoveredEntity.objects.filter(
            integration=integration, state=DiscoveredState.IMPORTED
        ).count()
        == REPOS
    )


def test_the_next_run_reads_failed_repositories_first(bitbucket):
    *_, last = repositories(bitbucket)
    bitbucket.server.world.forbid(last, kind="pull_requests", status=403)
    integration = bitbucket.integration()
    sync(integration)
    bitbucket.server.world.read_traps_clear()
    bitbucket.server.api.log.reset()

    sync(integration, full=True)

    reads = [
        entry.path
        for entry in bitbucket.server.api.log.entries()
        if "pull-requests" in entry.path or "pullrequests" in entry.path
    ]
    assert reads and (last.slug in reads[0] or last.uuid in reads[0])


def test_refused_credentials_still_fail_the_whole_run(bitbucket):
    integration = bitbucket.integration()
    connector = integration.connector
    connector.secrets = {key: "wrong" for key in connector.secrets}
    connector.save()

    run = sync(integration)

    assert run.state == SyncState.FAILED
    assert run.error
    assert not DiscoveredEntity.objects.filter(integration=integration).exists()
