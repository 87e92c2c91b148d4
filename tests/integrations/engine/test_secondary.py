"""Secondary kinds: first-sync window, per-run cap, start-date backfill, incremental updates."""

import dataclasses
from datetime import date, datetime, timedelta

import pytest
from django.db.models import Count, Max, Min, Sum

from integrations.engine import secondary
from integrations.engine.sync import integration_sync
from integrations.models import Commit, DiscoveredEntity, PullRequest, SyncRun
from tests.integrations.engine.conftest import sync_ok
from tests.integrations.fake_provider import EPOCH, FakeProvider, World

BOTH = ["pull_requests", "commits"]


def ingested_prs(integration) -> dict[tuple[str, str], tuple[datetime, str]]:
    return {
        (uid, number): (updated_on, title)
        for uid, number, updated_on, title in PullRequest.objects.filter(
            discovered__integration=integration
        ).values_list("discovered__external_id", "external_id", "updated_on", "title")
    }


def ingested_commits(integration) -> set[tuple[str, str]]:
    return set(
        Commit.objects.filter(discovered__integration=integration).values_list(
            "discovered__external_id", "hash"
        )
    )


def expected_prs(world: World, *, newest: int | None = None, after: datetime | None = None):
    """Per repo: the ``newest`` most recent PRs, or every PR updated after ``after``."""
    expected = {}
    for repo in world.repos:
        prs = sorted(repo.pull_requests, key=lambda pr: pr.updated_on, reverse=True)
        if after is not None:
            prs = [pr for pr in prs if pr.updated_on > after]
        if newest is not None:
            prs = prs[:newest]
        expected.update({(repo.uid, pr.external_id): (pr.updated_on, pr.title) for pr in prs})
    return expected


def expected_commits(world: World, *, newest: int | None = None, after: datetime | None = None):
    expected = set()
    for repo in world.repos:
        commits = sorted(repo.commits, key=lambda commit: commit.date, reverse=True)
        if after is not None:
            commits = [commit for commit in commits if commit.date > after]
        if newest is not None:
            commits = commits[:newest]
        expected.update((repo.uid, commit.hash) for commit in commits)
    return expected


def assert_no_duplicates_and_nothing_fetched_twice(integration) -> None:
    """Rows are unique by (repository, id), and the runs wrote each row exactly once: a static
    world is never re-fetched."""
    prs = PullRequest.objects.filter(discovered__integration=integration)
    assert prs.count() == len(set(prs.values_list("discovered_id", "external_id")))
    written = SyncRun.objects.filter(integration=integration).aggregate(
        prs=Sum("pull_requests"), commits=Sum("commits")
    )
    assert written["prs"] == prs.count()
    assert written["commits"] == Commit.objects.filter(discovered__integration=integration).count()


def per_repo_counts(integration, model=PullRequest) -> dict[str, int]:
    rows = DiscoveredEntity.objects.filter(integration=integration).annotate(
        n=Count("pull_requests" if model is PullRequest else "commits")
    )
    return {row.name: row.n for row in rows}


def test_first_sync_takes_the_50_most_recent_pull_requests_and_commits_per_repo(
    world, make_integration
):
    world.add_repo("big", prs=70, commits=80)
    world.add_repo("small", prs=10, commits=3)
    world.add_repo("empty")
    integration = make_integration(secondary_kinds=BOTH)

    run = sync_ok(integration)

    assert (run.pull_requests, run.commits) == (60, 53)
    assert ingested_prs(integration) == expected_prs(world, newest=50)
    assert ingested_commits(integration) == expected_commits(world, newest=50)
    assert per_repo_counts(integration) == {"big": 50, "small": 10, "empty": 0}
    # Nothing changed: a second run fetches nothing and writes nothing.
    again = sync_ok(integration)
    assert (again.pull_requests, again.commits) == (0, 0)
    assert ingested_prs(integration) == expected_prs(world, newest=50)


def test_only_the_configured_secondary_kinds_are_ingested(world, make_integration):
    world.add_repo("svc", prs=5, commits=5)
    integration = make_integration(secondary_kinds=["commits"])
    sync_ok(integration)
    assert not PullRequest.objects.exists()
    assert Commit.objects.count() == 5


def test_run_cap_writes_exactly_5000_and_cut_repos_complete_on_following_runs(
    world, make_integration
):
    for index in range(120):
        world.add_repo(f"repo-{index:03d}", prs=60, commits=60)
    world.pagelen = 50
    integration = make_integration(secondary_kinds=BOTH)

    first = sync_ok(integration)

    assert (first.pull_requests, first.commits) == (5000, 5000)
    assert PullRequest.objects.count() == Commit.objects.count() == 5000
    counts = per_repo_counts(integration)
    assert sorted(counts.values()) == [0] * 20 + [50] * 100
    assert per_repo_counts(integration, Commit) == counts

    second = sync_ok(integration)

    assert (second.pull_requests, second.commits) == (1000, 1000)
    assert ingested_prs(integration) == expected_prs(world, newest=50)
    assert ingested_commits(integration) == expected_commits(world, newest=50)
    third = sync_ok(integration)
    assert (third.pull_requests, third.commits) == (0, 0)
    assert_no_duplicates_and_nothing_fetched_twice(integration)


def _days_world(world: World, repos: int, items: int) -> None:
    """``items`` PRs and commits per repo, one every 12 hours from EPOCH (never at midnight
    exactly, so a start date is unambiguous)."""
    for index in range(repos):
        repo = world.add_repo(f"svc-{index}")
        for number in range(items):
            stamp = EPOCH + timedelta(hours=12 * number + 3)
            world.add_pull_request(repo, number, when=stamp)
            world.add_commit(repo, number, when=stamp + timedelta(minutes=7))
        repo.updated_on = EPOCH + timedelta(days=items)


def test_start_date_backfills_on_later_runs_and_never_ingests_older_items(
    world, make_integration, monkeypatch
):
    monkeypatch.setattr(secondary, "RUN_CAP", 100)
    _days_world(world, repos=3, items=120)  # 60 days of history per repo
    start = date(2024, 1, 16)  # 30 items (15 days) are older than the start date
    start_dt = datetime.combine(start, datetime.min.time(), tzinfo=EPOCH.tzinfo)
    integration = make_integration(secondary_kinds=BOTH, start_date=start)
    expected = expected_prs(world, after=start_dt)
    assert len(expected) == 3 * 90

    runs = 0
    while True:
        run = sync_ok(integration)
        runs += 1
        oldest = PullRequest.objects.aggregate(oldest=Min("updated_on"))["oldest"]
        assert oldest > start_dt
        assert Commit.objects.aggregate(oldest=Min("date"))["oldest"] > start_dt
        if run.pull_requests == 0:
            break
        assert run.pull_requests <= 100
        assert runs < 10
    assert runs == 4  # 270 items at 100 per run, then one run that finds nothing
    assert ingested_prs(integration) == expected
    assert ingested_commits(integration) == expected_commits(world, after=start_dt)
    assert_no_duplicates_and_nothing_fetched_twice(integration)


def test_first_run_with_a_start_date_takes_newest_first(world, make_integration, monkeypatch):
    monkeypatch.setattr(secondary, "RUN_CAP", 100)
    _days_world(world, repos=3, items=120)
    integration = make_integration(secondary_kinds=["pull_requests"], start_date=date(2024, 1, 16))
    sync_ok(integration)
    # The cap stops the first sync after two repositories, each with its 50 newest items.
    assert sorted(per_repo_counts(integration).values()) == [0, 50, 50]
    assert ingested_prs(integration).items() <= expected_prs(world, newest=50).items()


def test_new_and_updated_pull_requests_are_picked_up_by_the_next_run(world, make_integration):
    repo = world.add_repo("svc", prs=60, commits=55)
    world.add_repo("quiet", prs=3)
    integration = make_integration(secondary_kinds=BOTH)
    sync_ok(integration)
    assert len(ingested_prs(integration)) == 53

    latest = max(pr.updated_on for pr in repo.pull_requests)
    world.add_pull_request(repo, 60, when=latest + timedelta(hours=1))
    # PR #20 (already ingested) is updated; PR #3 (older than the first-sync window) too.
    for number in (20, 3):
        index = next(i for i, pr in enumerate(repo.pull_requests) if pr.external_id == str(number))
        repo.pull_requests[index] = dataclasses.replace(
            repo.pull_requests[index],
            title=f"updated #{number}",
            state="DECLINED",
            updated_on=latest + timedelta(hours=2, minutes=number),
        )
    world.add_commit(repo, 55, when=latest + timedelta(hours=3))
    repo.updated_on = latest + timedelta(hours=3)

    run = sync_ok(integration)

    assert (run.pull_requests, run.commits) == (3, 1)
    prs = ingested_prs(integration)
    assert prs[(repo.uid, "61")][1] == "svc change 61"
    assert prs[(repo.uid, "20")][1] == "updated #20"
    assert prs[(repo.uid, "3")][1] == "updated #3"
    assert PullRequest.objects.get(discovered__name="svc", external_id="3").state == "DECLINED"
    assert len(prs) == 53 + 2  # one new, one that came back into view; #20 updated in place
    assert len(ingested_commits(integration)) == 50 + 1


def test_incremental_fetch_cut_by_the_cap_fills_its_gap_on_later_runs(
    world, make_integration, monkeypatch
):
    repo = world.add_repo("busy", prs=50)
    integration = make_integration(secondary_kinds=["pull_requests"])
    sync_ok(integration)
    first_window = expected_prs(world, newest=50)

    for number in range(50, 130):
        world.add_pull_request(repo, number)
    repo.updated_on = EPOCH + timedelta(days=30)
    monkeypatch.setattr(secondary, "RUN_CAP", 30)

    written = [sync_ok(integration).pull_requests for _ in range(5)]

    assert written == [30, 30, 20, 0, 0]
    new = {(repo.uid, str(n + 1)) for n in range(50, 130)}
    assert set(ingested_prs(integration)) == set(first_window) | new
    assert_no_duplicates_and_nothing_fetched_twice(integration)
    state = DiscoveredEntity.objects.get(name="busy").secondary_state["pull_requests"]
    assert state["gaps"] == []


def test_gone_repositories_are_not_fetched(world, make_integration):
    for index in range(4):
        world.add_repo(f"svc-{index}", prs=2)
    integration = make_integration(secondary_kinds=["pull_requests"])
    sync_ok(integration, full=True)
    gone = world.repos.pop()
    world.add_pull_request(gone, 2, when=EPOCH + timedelta(days=9))
    gone.updated_on = EPOCH + timedelta(days=9)
    run = sync_ok(integration, full=True)
    assert run.gone == 1
    assert run.pull_requests == 0


class SloppyProvider(FakeProvider):
    """Ignores ``since``/``until``: the engine must still keep to the start date."""

    def _bounded(self, items, stamp, since, until, limit):
        return super()._bounded(items, stamp, None, None, limit)


def test_engine_refuses_items_older_than_the_start_date_from_a_sloppy_provider(
    world, make_integration, connector
):
    _days_world(world, repos=1, items=40)  # 20 days
    start = date(2024, 1, 11)
    start_dt = datetime.combine(start, datetime.min.time(), tzinfo=EPOCH.tzinfo)
    integration = make_integration(secondary_kinds=BOTH, start_date=start)
    for _ in range(3):
        run = integration_sync(
            integration_id=integration.pk,
            trigger="manual",
            provider=SloppyProvider(connector=connector, integration=integration),
        )
        assert run.state == "succeeded", run.error
    assert PullRequest.objects.aggregate(oldest=Min("updated_on"))["oldest"] > start_dt
    assert set(ingested_prs(integration)) == set(expected_prs(world, after=start_dt))
    assert PullRequest.objects.aggregate(newest=Max("updated_on"))["newest"] == max(
        pr.updated_on for pr in world.repos[0].pull_requests
    )


@pytest.mark.parametrize("crash_after", [0, 2, 4])
def test_crash_during_secondary_fetch_then_rerun_converges_without_duplicates(
    world, make_integration, crash_after, monkeypatch
):
    monkeypatch.setattr(secondary, "RUN_CAP", 120)
    _days_world(world, repos=4, items=60)
    start = date(2024, 1, 6)
    start_dt = datetime.combine(start, datetime.min.time(), tzinfo=EPOCH.tzinfo)
    integration = make_integration(secondary_kinds=BOTH, start_date=start)
    world.fail_after_secondary_fetches = crash_after

    crashed = integration_sync(integration_id=integration.pk, trigger="manual")
    assert crashed.state == "failed"
    assert "injected crash" in crashed.error
    for _ in range(6):
        sync_ok(integration)

    assert ingested_prs(integration) == expected_prs(world, after=start_dt)
    assert ingested_commits(integration) == expected_commits(world, after=start_dt)
    prs = PullRequest.objects.all()
    assert prs.count() == len(set(prs.values_list("discovered_id", "external_id")))


def test_items_sharing_a_timestamp_across_a_cut_are_all_ingested(
    world, make_integration, monkeypatch
):
    """Commit dates have one-second resolution: the first-sync cut and the per-run cap can fall
    between items with the same timestamp, and the rest must still be fetched later."""
    repo = world.add_repo("svc")
    for number in range(60):
        # 60 items, newest first at positions 0..59; positions 48..52 share one second, where
        # the first sync (50) is cut.
        position = 59 - number
        group = 48 if 48 <= position <= 52 else position
        stamp = EPOCH + timedelta(days=10, minutes=-group)
        world.add_pull_request(repo, number, when=stamp)
        world.add_commit(repo, number, when=stamp)
    integration = make_integration(secondary_kinds=BOTH, start_date=date(2024, 1, 1))
    sync_ok(integration)
    sync_ok(integration)
    assert ingested_prs(integration) == expected_prs(world)
    assert ingested_commits(integration) == expected_commits(world)

    for number in range(60, 80):  # 20 newer items; positions 8..12 of them share one second
        position = 79 - number
        group = 8 if 8 <= position <= 12 else position
        stamp = EPOCH + timedelta(days=11, minutes=-group)
        world.add_pull_request(repo, number, when=stamp)
        world.add_commit(repo, number, when=stamp)
    repo.updated_on = EPOCH + timedelta(days=12)
    monkeypatch.setattr(secondary, "RUN_CAP", 10)  # the incremental fetch is cut at position 9
    for _ in range(5):
        sync_ok(integration)
    assert ingested_prs(integration) == expected_prs(world)
    assert ingested_commits(integration) == expected_commits(world)
    assert_no_duplicates_and_nothing_fetched_twice(integration)


def test_start_date_set_or_moved_earlier_after_the_first_sync_backfills_to_it(
    world, make_integration
):
    from integrations import services

    _days_world(world, repos=2, items=120)  # 60 days per repository
    integration = make_integration(secondary_kinds=BOTH)
    sync_ok(integration)
    assert ingested_prs(integration) == expected_prs(world, newest=50)

    for start in (date(2024, 1, 16), date(2024, 1, 6)):
        services.integration_update(integration=integration, start_date=start)
        sync_ok(integration)
        start_dt = datetime.combine(start, datetime.min.time(), tzinfo=EPOCH.tzinfo)
        assert ingested_prs(integration) == expected_prs(world, after=start_dt)
        assert ingested_commits(integration) == expected_commits(world, after=start_dt)
        assert sync_ok(integration).pull_requests == 0

    # A later start date fetches nothing and keeps what was ingested.
    services.integration_update(integration=integration, start_date=date(2024, 2, 1))
    assert sync_ok(integration).pull_requests == 0
    assert len(ingested_prs(integration)) == 2 * 110
    assert_no_duplicates_and_nothing_fetched_twice(integration)
