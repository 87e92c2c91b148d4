"""Metrics checked row by row against a sandbox world they were not written for, on both
providers: the sandbox's edge cases (a personal project, unicode, spaces and dots in names, an
empty repository) beside busy ones, synced over real sockets with pull requests and commits,
each linked entity's figures recomputed by hand from the world the sandbox served."""

import dataclasses
import statistics
from datetime import timedelta

import pytest

from integrations.choices import SecondaryKind
from integrations.models import ImportedEntity
from scorecards import services
from scorecards.models import EntityMetric, MetricStatus
from tests.integrations.engine.conftest import sync_ok
from tests.integrations.engine.test_valid_values import cloud_integration, dc_integration
from tests.sandbox.fixtures import (  # noqa: F401 (fixtures)
    cloud_world_factory,
    dc_world_factory,
    make_cloud_sandbox,
    make_dc_sandbox,
)

DAY = 86400


def _world(factory):
    world = factory(projects=2, repos=5, prs_per_repo=7, commits_per_repo=6)
    ws = world.workspaces[next(iter(world.workspaces))]
    account = world.add_account(nickname="jdoe", display_name="Jane Doe", email="jdoe@example.com")
    ws.members.append(account.uuid)
    world.edge_cases(workspace=ws.slug, user="jdoe")
    return world


@pytest.fixture(params=["cloud", "dc"])
def synced_world(request, settings, make_cloud_sandbox, make_dc_sandbox):  # noqa: F811
    settings.BITBUCKET_DC_ENABLED = True
    if request.param == "cloud":
        server = make_cloud_sandbox(_world(cloud_world_factory))
    else:
        server = make_dc_sandbox(_world(dc_world_factory))
    make = cloud_integration if request.param == "cloud" else dc_integration
    integration = make(server, secondary_kinds=[SecondaryKind.PULL_REQUESTS, SecondaryKind.COMMITS])
    sync_ok(integration)
    return server.world, integration


def _as_served(pr, provider: str):
    """The pull request as the provider's API serves it: Data Center has no SUPERSEDED state
    (the sandbox, like Bitbucket, answers DECLINED)."""
    if provider == "bitbucket_dc" and pr.state == "SUPERSEDED":
        return dataclasses.replace(pr, state="DECLINED")
    return pr


def _figures(entity) -> dict[tuple[str, int], EntityMetric]:
    return {(m.metric, m.window_days): m for m in EntityMetric.objects.filter(entity=entity)}


@pytest.mark.django_db(transaction=True)
def test_every_linked_entity_s_metrics_match_the_world_it_was_synced_from(synced_world):
    world, integration = synced_world
    provider = integration.connector.provider
    repos = {repo.uuid: repo for repo in world.iter_repositories()}
    links = list(
        ImportedEntity.objects.filter(integration=integration, state="linked").select_related(
            "discovered", "entity"
        )
    )
    entity_ids = [link.entity_id for link in links]
    assert len(links) == len(repos), "every repository, odd names included, is in the catalog"
    now = max(
        [pr.updated_on for repo in repos.values() for pr in repo.pull_requests.values()]
    ) + timedelta(days=1)
    services.metrics_refresh(entity_ids=entity_ids, now=now)

    checked_busy = checked_empty = 0
    for link in links:
        repo = repos[_repo_key(link.discovered, repos)]
        figures = _figures(link.entity)
        prs = [_as_served(pr, provider) for pr in repo.pull_requests.values()]
        open_prs = figures[("open_prs", 0)]
        assert (open_prs.value, open_prs.n) == (
            sum(pr.state == "OPEN" for pr in prs),
            len(prs),
        ), repo.slug
        since = now - timedelta(days=90)
        merged = [pr for pr in prs if pr.state == "MERGED" and pr.updated_on >= since]
        declined = [pr for pr in prs if pr.state == "DECLINED" and pr.updated_on >= since]
        median = figures[("pr_cycle_time_median_days", 90)]
        assert median.n == len(merged), repo.slug
        if len(merged) >= 3:
            cycles = [(pr.updated_on - pr.created_on).total_seconds() / DAY for pr in merged]
            assert median.value == pytest.approx(statistics.median(cycles), abs=1e-6)
            assert median.status == MetricStatus.OK
            checked_busy += 1
        else:
            assert median.status == MetricStatus.TOO_LITTLE_DATA, repo.slug
        ratio = figures[("declined_ratio", 90)]
        assert ratio.n == len(merged) + len(declined), repo.slug
        if merged or declined:
            assert ratio.value == pytest.approx(len(declined) / (len(merged) + len(declined)))
        if not prs:
            checked_empty += 1
            assert figures[("merged_prs_per_week", 90)].status == MetricStatus.TOO_LITTLE_DATA
    assert checked_busy and checked_empty, "the world holds busy and pull-request-less repos"


def _repo_key(discovered, repos: dict) -> str:
    """Cloud's records are keyed by the repository's uuid; Data Center's by a numeric id of its
    own, so those are matched by project and slug."""
    if discovered.external_id in repos:
        return discovered.external_id
    data = discovered.data
    (uuid,) = [
        uuid
        for uuid, repo in repos.items()
        if (repo.project_key or "").upper() == data["project_key"].upper()
        and repo.slug == data["slug"]
    ]
    return uuid
