"""First-sync reads made ahead on a worker thread are exactly the reads a pass makes as it goes:
the same requests in the same order, the same items written, an error raised at the same row
and no read made after it."""

import threading

import pytest

from integrations.choices import SyncState
from integrations.engine import secondary
from integrations.models import Commit, ImportedEntity, PullRequest
from tests.integrations.engine.conftest import sync, sync_ok
from tests.integrations.fake_provider import FakeProvider

BOTH = ["pull_requests", "commits"]


@pytest.fixture
def reads(monkeypatch):
    """Every secondary read the fake provider is asked for, in order, and on which thread."""
    made: list[tuple] = []
    for method in ("iter_pull_requests", "iter_commits"):
        real = getattr(FakeProvider, method)

        def read(self, repo, *, since=None, until=None, limit, real=real, method=method):
            worker = threading.current_thread() is not threading.main_thread()
            made.append((method, repo["name"], since, until, limit, worker))
            return real(self, repo, since=since, until=until, limit=limit)

        monkeypatch.setattr(FakeProvider, method, read)
    return made


def _ahead(monkeypatch, on: bool) -> None:
    monkeypatch.setattr(FakeProvider, "reads_in_background", lambda self: on, raising=False)


def _written(integration) -> tuple[set, set]:
    prs = set(
        PullRequest.objects.filter(discovered__integration=integration).values_list(
            "discovered__name", "external_id", "updated_on", "title"
        )
    )
    commits = set(
        Commit.objects.filter(discovered__integration=integration).values_list(
            "discovered__name", "hash", "date"
        )
    )
    return prs, commits


def test_reads_ahead_are_the_reads_in_turn_up_to_and_past_the_cap(
    world, make_integration, monkeypatch, reads
):
    # 12 repositories of 30 items, a cap of 200: full first syncs, then the cap comes near (the
    # reads are made in turn, the last one cut to what is left), then it is spent.
    monkeypatch.setattr(secondary, "RUN_CAP", 200)
    for index in range(12):
        world.add_repo(f"repo-{index:02d}", prs=30, commits=30 if index % 3 else 0)
    world.pagelen = 5

    _ahead(monkeypatch, False)
    in_turn = make_integration("in-turn", secondary_kinds=BOTH)
    sync_ok(in_turn)
    expected, written = list(reads), _written(in_turn)
    reads.clear()

    _ahead(monkeypatch, True)
    ahead = make_integration("ahead", secondary_kinds=BOTH)
    run = sync_ok(ahead)

    assert [read[:5] for read in reads] == [read[:5] for read in expected]
    assert any(read[5] for read in reads)  # some were read on the worker
    assert [read[4] for read in reads if read[0] == "iter_pull_requests"][-1] < 50  # cut
    assert _written(ahead) == written
    assert (run.pull_requests, run.commits) == (200, 200)
    # The next run carries on as after a run that read in turn.
    reads.clear()
    sync_ok(ahead)
    after_ahead = [read[:5] for read in reads]
    reads.clear()
    sync_ok(in_turn)
    assert after_ahead == [read[:5] for read in reads]
    assert _written(ahead) == _written(in_turn)


@pytest.mark.parametrize("fetches", [0, 3, 7])
def test_a_failed_read_ahead_fails_the_run_at_its_row_and_no_read_follows_it(
    world, make_integration, monkeypatch, reads, fetches
):
    for index in range(10):
        world.add_repo(f"repo-{index:02d}", prs=5, commits=5)

    _ahead(monkeypatch, False)
    in_turn = make_integration("in-turn", secondary_kinds=BOTH)
    world.secondary_fetches, world.fail_after_secondary_fetches = 0, fetches
    failed = sync(in_turn)
    expected, written = list(reads), _written(in_turn)
    reads.clear()

    _ahead(monkeypatch, True)
    ahead = make_integration("ahead", secondary_kinds=BOTH)
    world.secondary_fetches, world.fail_after_secondary_fetches = 0, fetches
    run = sync(ahead)

    assert (run.state, run.error) == (SyncState.FAILED, failed.error)
    assert "injected crash" in run.error
    assert [read[:5] for read in reads] == [read[:5] for read in expected]
    assert _written(ahead) == written
    # A clean re-run of each converges on the same items.
    sync_ok(in_turn)
    sync_ok(ahead)
    assert _written(ahead) == _written(in_turn)


@pytest.fixture
def listing(monkeypatch):
    """The listing's page reads and catalog-file reads, in order."""
    made: list[tuple] = []
    real_request = FakeProvider._request

    def request(self):
        made.append(("page",))
        return real_request(self)

    def read_file(self, repo, path):
        made.append(("file", repo["name"]))
        return b"metadata: {description: from the file}\n" if repo["name"] < "r03" else None

    monkeypatch.setattr(FakeProvider, "_request", request)
    monkeypatch.setattr(FakeProvider, "read_file", read_file)
    monkeypatch.setattr(FakeProvider, "catalog_file", "catalog-info.yaml", raising=False)
    return made


@pytest.mark.parametrize("fail_after_pages", [None, 0, 2])
def test_the_next_listing_page_read_ahead_keeps_the_requests_and_the_failures_in_order(
    world, engine_integration, monkeypatch, listing, fail_after_pages
):
    for index in range(11):
        world.add_repo(f"r{index:02d}")
    world.pagelen = 3

    def run(name: str, ahead: bool):
        _ahead(monkeypatch, ahead)
        listing.clear()
        world.fail_after_pages = fail_after_pages
        integration = engine_integration(name, auto_import=True)
        result = sync(integration)
        discovered = sorted(
            (row.name, row.data.get("catalog_info")) for row in integration.discovered.all()
        )
        return result, list(listing), discovered

    in_turn, in_turn_requests, in_turn_discovered = run("in-turn", False)
    # One repository is imported by one integration: the second imports what the first let go.
    ImportedEntity.objects.filter(integration=in_turn.integration).delete()
    ahead, ahead_requests, ahead_discovered = run("ahead", True)

    assert (ahead.state, ahead.error, ahead.discovered) == (
        in_turn.state,
        in_turn.error,
        in_turn.discovered,
    )
    assert ahead_requests == in_turn_requests
    assert ahead_discovered == in_turn_discovered
    expected = SyncState.SUCCEEDED if fail_after_pages is None else SyncState.FAILED
    assert ahead.state == expected
