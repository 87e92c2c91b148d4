"""The per-run cap of pull requests and commits, swept over every position of a small world, on
Bitbucket Cloud and Data Center over real sockets: wherever the cap falls (inside a page,
between pages, on a repository's last item, inside its first-sync window), the runs after it
complete each repository's first-sync window and its backfill back to the start date, and end
with exactly the pull requests and commits of one uncapped run, row by row.

The world is three repositories of 7 pull requests and 7 commits each, read 2 to a page, with
the first-sync window shrunk from 50 to 4 so the sweep crosses it: 21 items of each kind, so
the cap takes every value from 1 to 22.
"""

from datetime import date

import pytest

from integrations.choices import SyncState
from integrations.engine import secondary
from integrations.providers.bitbucket_cloud import client as cloud_client
from integrations.providers.bitbucket_dc import client as dc_client
from tests.integrations.catalog_snapshot import snapshot, wipe
from tests.integrations.engine.conftest import sync

pytestmark = pytest.mark.django_db

REPOS, ITEMS, WINDOW, PAGE = 3, 7, 4, 2
MAX_RUNS = REPOS * ITEMS + 3  # a cap of 1 needs one run per item, and a last one to notice


@pytest.fixture
def small_pages(monkeypatch):
    monkeypatch.setattr(secondary, "FIRST_SYNC_LIMIT", WINDOW)
    monkeypatch.setattr(cloud_client, "PULL_REQUESTS_PAGELEN", PAGE)
    monkeypatch.setattr(cloud_client, "COMMITS_PAGELEN", PAGE)
    monkeypatch.setattr(dc_client, "PULL_REQUESTS_LIMIT", PAGE)
    monkeypatch.setattr(dc_client, "COMMITS_LIMIT", PAGE)


def secondary_rows() -> dict:
    rows = snapshot()
    return {"pull_requests": rows["pull_requests"], "commits": rows["commits"]}


def sync_until_settled(bitbucket, integration) -> list:
    """Sync until a run writes no pull request and no commit; returns the runs."""
    runs = []
    for _ in range(MAX_RUNS):
        run = sync(integration)
        assert run.state == SyncState.SUCCEEDED, (run.state, run.error)
        runs.append(run)
        if run.pull_requests == 0 and run.commits == 0:
            return runs
    raise AssertionError(f"still writing after {MAX_RUNS} runs")


@pytest.mark.parametrize("start_date", [None, date(2000, 1, 1)], ids=["window", "backfill"])
@pytest.mark.parametrize("kind", ["cloud", "dc"])
def test_any_cap_position_ends_with_the_rows_of_an_uncapped_run(
    bitbucket_factory, small_pages, monkeypatch, kind, start_date
):
    bitbucket = bitbucket_factory(kind, repos=REPOS, prs=ITEMS, commits=ITEMS)
    full = bitbucket.integration(auto_import=False, start_date=start_date)
    sync_until_settled(bitbucket, full)
    uncapped = secondary_rows()
    per_repository = REPOS if start_date is None else 0
    expected_each = WINDOW * REPOS if start_date is None else ITEMS * REPOS
    assert len(uncapped["pull_requests"]) == len(uncapped["commits"]) == expected_each
    assert per_repository in (0, REPOS)
    wipe()

    for cap in range(1, expected_each + 2):
        monkeypatch.setattr(secondary, "RUN_CAP", cap)
        integration = bitbucket.integration(
            f"capped-{cap}", auto_import=False, start_date=start_date
        )
        runs = sync_until_settled(bitbucket, integration)
        assert all(run.pull_requests <= cap and run.commits <= cap for run in runs), cap
        assert secondary_rows() == uncapped, f"cap {cap}"
        wipe()
