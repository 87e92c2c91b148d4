"""Issue #15 item 9: an unchanged Data Center re-sync costs the listing pages plus one request per
repository (``/branches/default`` carries the tip; the tip's date is read only when the tip moved),
counted from the sandbox's own request log over real sockets — and the edge cases real instances
have (personal projects, odd names) read through the provider."""

import pytest

from integrations.models import Connector
from integrations.providers import registry
from integrations.providers.bitbucket_dc.provider import BitbucketDataCenterProvider
from tests.integrations.bitbucket_dc.conftest import (
    make_connector,
    make_integration,
    requests_of,
    world,
)
from tests.integrations.engine.conftest import sync_ok

LISTING = "GET /rest/api/1.0/repos"
BRANCH = "GET /rest/api/1.0/projects/{project_key}/repos/{repo_slug}/branches/default"
COMMIT = "GET /rest/api/1.0/projects/{project_key}/repos/{repo_slug}/commits/{commit_id}"


def provider(server, *, page_limit: int = 7) -> BitbucketDataCenterProvider:
    """A fresh provider (its own stats) over the one connector of this sandbox."""
    connector = Connector.objects.filter(base_url=server.url).first() or make_connector(server)
    return registry.build(
        BitbucketDataCenterProvider, connector=connector, integration=None, page_limit=page_limit
    )


def listed(provider_, known=None) -> list:
    return [record for page in provider_.iter_repositories(known=known) for record in page]


def store_of(records):
    """``known`` over what a first pass returned, recording what it was asked."""
    stored = {record.external_id: record.data for record in records}
    asked: list[list[str]] = []

    def known(ids: list[str]) -> dict[str, dict]:
        asked.append(list(ids))
        return {i: stored[i] for i in ids if i in stored}

    known.asked = asked
    return known


def api_requests(server) -> int:
    return len(requests_of(server))


@pytest.mark.django_db
def test_an_unchanged_listing_costs_the_pages_plus_one_request_per_repository(sandbox):
    server = sandbox(world(30))
    first = listed(provider(server))
    server.api.log.reset()

    again = provider(server)
    second = listed(again, known=store_of(first))

    pages = len(requests_of(server, LISTING))
    assert pages == 5  # 30 repositories, 7 a page
    assert api_requests(server) == pages + 30
    assert len(requests_of(server, BRANCH)) == 30 and not requests_of(server, COMMIT)
    assert again.stats.unchanged == 30
    assert [(r.external_id, r.data, r.updated_at) for r in second] == [
        (r.external_id, r.data, r.updated_at) for r in first
    ]


@pytest.mark.django_db
def test_without_known_data_each_repository_with_commits_costs_two_requests(sandbox):
    server = sandbox(world(30))
    fresh = provider(server)
    records = listed(fresh)
    non_empty = sum(1 for r in server.world.iter_repositories() if r.mainbranch)
    assert api_requests(server) == len(requests_of(server, LISTING)) + 30 + non_empty
    assert fresh.stats.unchanged == 0
    assert all(r.data["latest_commit"] for r in records if r.data["default_branch"])


@pytest.mark.django_db
def test_a_push_costs_one_more_request_for_that_repository_alone(sandbox):
    server = sandbox(world(30))
    first = listed(provider(server))
    repo = next(r for r in server.world.iter_repositories() if r.mainbranch)
    (pushed,) = server.world.commits_push(workspace=repo.workspace, slug=repo.slug, count=1)
    server.api.log.reset()

    again = provider(server)
    second = {r.name: r for r in listed(again, known=store_of(first))}

    assert api_requests(server) == len(requests_of(server, LISTING)) + 30 + 1
    assert [entry.path.rsplit("/", 1)[-1] for entry in requests_of(server, COMMIT)] == [pushed.hash]
    assert again.stats.unchanged == 29
    moved = second[repo.slug]
    assert moved.data["latest_commit"] == pushed.hash
    assert moved.updated_at is not None
    assert abs((moved.updated_at - pushed.date).total_seconds()) < 0.001
    before = {r.name: r for r in first}[repo.slug]
    assert moved.updated_at > before.updated_at


@pytest.mark.django_db
def test_known_is_asked_once_per_listing_page_with_that_pages_ids(sandbox):
    server = sandbox(world(30))
    first = listed(provider(server))
    known = store_of(first)
    listed(provider(server), known=known)
    assert [len(ids) for ids in known.asked] == [7, 7, 7, 7, 2]
    assert [i for ids in known.asked for i in ids] == [r.external_id for r in first]


@pytest.mark.django_db
def test_a_stored_record_of_another_default_branch_is_read_again(sandbox):
    server = sandbox(world(12))
    first = listed(provider(server))
    target = next(r for r in first if r.data["default_branch"])
    stored = {r.external_id: r.data for r in first}
    stored[target.external_id] = {**target.data, "default_branch": "some-old-branch"}

    server.api.log.reset()
    again = provider(server)
    second = {r.external_id: r for r in listed(again, known=lambda ids: stored)}
    assert [entry.path.rsplit("/", 1)[-1] for entry in requests_of(server, COMMIT)] == [
        target.data["latest_commit"]
    ]
    assert second[target.external_id].data == target.data
    assert again.stats.unchanged == 11


@pytest.mark.django_db
def test_an_unchanged_dc_resync_costs_at_most_the_listing_pages_plus_one_request_per_repository(
    sandbox,
):
    """Through the engine: needs ``integration_sync`` to pass ``known=`` to the provider and to
    copy ``provider.stats.unchanged`` into ``SyncRun.unchanged``."""
    server = sandbox.default
    integration = make_integration(make_connector(server))
    sync_ok(integration)
    server.api.log.reset()

    run = sync_ok(integration)

    repositories = len(list(server.world.iter_repositories()))
    pages = len(requests_of(server, LISTING))
    assert api_requests(server) <= pages + repositories
    assert run.requests <= pages + repositories
    assert run.unchanged == repositories


# -- edge cases through the provider --------------------------------------------------------------


@pytest.mark.django_db
def test_personal_and_oddly_named_repositories_are_listed_and_read(sandbox):
    w = world(6)
    cases = w.edge_cases()
    server = sandbox(w)
    dc = provider(server, page_limit=100)
    records = {r.data["slug"]: r for r in listed(dc)}
    personal = records["personal-notes"]
    assert personal.data["project_key"] == cases["personal"].project_key
    assert personal.data["project_key"].startswith("~")
    assert personal.data["url"].endswith("/repos/personal-notes/browse")
    assert records["scratch"].data["default_branch"] is None
    assert records["caf-ber-service"].data["name"] == "Café Über Service"
    assert records["data-pipeline-v2"].data["name"] == "data pipeline (v2)"
    assert dc.read_file(personal, "README.md") == b"# Edge case\n"
    commits = list(dc.iter_commits(personal, limit=10))
    assert [c.hash for c in commits] == [cases["personal"].branches["main"]]
    assert list(dc.iter_pull_requests(records["config.v1.2"], limit=10)) == []
