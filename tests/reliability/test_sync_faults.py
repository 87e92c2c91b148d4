"""Syncs through injected faults, against the Bitbucket Cloud and Data Center sandboxes over real
sockets: each faulty sync succeeds or fails cleanly (a FAILED run with its error recorded, the
integration free again; never an exception escaping, never a hung run), and once the faults stop
the next sync gives exactly the catalog of a clean run of the same world — the same entities,
search rows, relations, discovered records, links, pull requests and commits; none lost, none
duplicated, nothing wrongly marked gone.

The world: 36 repositories in 3 projects, 10 to a listing page, pull requests and commits 1 to a
page, auto-import on, both secondary kinds. The faults: 429 with ``Retry-After`` 0 or 1, 500, 502,
503, slow answers (read timeouts: the client waits 0.25 s, the sandbox answers after 0.4 s),
dropped connections, truncated and malformed JSON, an empty page in the middle of a listing and a
page whose continuation points back at a page already fetched. In a mix at rate r the eight kinds
that can meet any answer share r equally, and the two page faults get r/8 each on the pages they
can meet (those with more to come); the share of requests that met a fault is measured.

Figures (seeded, so reproducible; each mixed test prints its own, ``-s`` shows them):

=============  ====  =================  ========  ===============  ===============================
provider       rate  faulty syncs       requests  faults           of which
=============  ====  =================  ========  ===============  ===============================
Cloud          10 %  3, all succeeded   343       37 (11 %)        all 10 kinds; 6 empty pages,
                                                                   4 repeated nexts, 4 timeouts
Cloud          30 %  3, all succeeded   435       129 (30 %)       all 10 kinds; 16 429s,
                                                                   13 timeouts, 17 drops
Data Center    10 %  3, all succeeded   560       44 (8 %)         all 10 kinds; 2 empty pages,
                                                                   2 repeated nexts
Data Center    30 %  3, all succeeded   717       201 (28 %)       all 10 kinds; 28 429s,
                                                                   21 timeouts, 27 drops
=============  ====  =================  ========  ===============  ===============================

In all, 12 syncs survived 411 injected faults (in 2,055 requests), and in each case the next sync
without faults gave exactly the clean catalog. Besides: 20 first syncs meeting one fault kind alone
on a listing page (both providers, all ten kinds) succeeded with one extra request; 4 full
re-syncs through an empty or a repeated page succeeded and marked nothing gone; 4 whose listing
kept failing (a repeated ``next`` or a 503, five times over) failed cleanly, nothing marked gone.
"""

from collections import Counter

import pytest

from integrations.choices import DiscoveredState, SyncMode, SyncState
from integrations.models import DiscoveredEntity
from sandbox.traffic import KINDS
from tests.integrations.catalog_snapshot import snapshot, wipe
from tests.integrations.engine.conftest import sync, sync_ok
from tests.reliability.conftest import MAX_TRIES, assert_finished_cleanly, catalog_diff

pytestmark = pytest.mark.django_db


@pytest.fixture(params=["cloud", "dc"])
def small_bitbucket(request, bitbucket_factory):
    """A smaller world for the focused tests: 25 repositories (listing pages of 10, 10 and 5),
    one pull request and one commit each."""
    return bitbucket_factory(request.param, repos=25, prs=1, commits=1)


def clean_catalog(bitbucket) -> dict:
    """The catalog one clean sync of the world gives; the database is left empty again."""
    run = sync_ok(bitbucket.integration())
    repos = len(list(bitbucket.server.world.iter_repositories()))
    assert run.discovered == run.imported == repos and run.pull_requests and run.commits
    clean = snapshot()
    assert not any(row["state"] == DiscoveredState.GONE for row in clean["discovered"].values())
    wipe()
    bitbucket.server.api.log.reset()
    return clean


@pytest.mark.parametrize("rate", [0.1, 0.3], ids=["10%", "30%"])
def test_syncs_under_every_fault_kind_end_cleanly_and_then_converge_on_the_clean_catalog(
    bitbucket, rate
):
    clean = clean_catalog(bitbucket)
    integration = bitbucket.integration()
    bitbucket.faults_everywhere(rate, seed=2026)

    runs = [
        sync(integration),  # the first: a full listing
        sync(integration),  # an incremental one (the full listing is not due)
        sync(integration, full=True),
    ]
    injected = Counter(bitbucket.faults.injected)
    requests = sum(run.requests for run in runs)  # as the client counts them, retries included
    for run in runs:
        assert_finished_cleanly(run)
    assert runs[0].mode == runs[2].mode == SyncMode.FULL
    if runs[0].state == SyncState.SUCCEEDED:
        assert runs[1].mode == SyncMode.INCREMENTAL

    bitbucket.faults_off()
    sync_ok(integration)
    assert catalog_diff(clean, snapshot()) == {}

    share = sum(injected.values()) / requests
    print(
        f"\n{bitbucket.kind} at {rate:.0%}: {len(runs)} syncs "
        f"({', '.join(run.state for run in runs)}), {requests} requests, "
        f"{sum(injected.values())} faults injected ({share:.0%}): {dict(sorted(injected.items()))}"
    )
    assert set(injected) == set(KINDS), "every kind of fault was in the mix"
    assert rate * 0.6 <= share <= rate * 1.4
    if rate == 0.1:  # five tries outlast what a tenth of requests failing throws at a sync
        assert [run.state for run in runs] == [SyncState.SUCCEEDED] * len(runs)


@pytest.mark.parametrize("kind", KINDS)
def test_each_fault_kind_alone_on_a_listing_page_is_retried_and_the_sync_succeeds(
    small_bitbucket, kind
):
    bitbucket = small_bitbucket
    clean = clean_catalog(bitbucket)
    clean_listing = 3  # pages of 10, 10 and 5
    bitbucket.faults_on_listing([None, kind])  # the second page, in the middle

    sync_ok(bitbucket.integration())

    assert bitbucket.faults.injected == Counter({kind: 1})
    listing = bitbucket.requests(bitbucket.listing)
    assert [entry.fault for entry in listing].count(kind) == 1
    assert len(listing) == clean_listing + 1  # the faulty page, fetched once more
    assert catalog_diff(clean, snapshot()) == {}


@pytest.mark.parametrize(
    ("faults", "error"),
    [
        (["empty_page"], None),
        (["repeat_next"], None),
        (["repeat_next"] * MAX_TRIES, "Pagination loop"),
        (["503"] * MAX_TRIES, f"kept failing (HTTP 503) after {MAX_TRIES} tries"),
    ],
    ids=["empty_page", "repeat_next", "repeat_next_persisting", "503_persisting"],
)
def test_a_full_listing_through_page_faults_marks_nothing_gone_and_fails_only_if_they_persist(
    small_bitbucket, faults, error
):
    bitbucket = small_bitbucket
    integration = bitbucket.integration(vanish_threshold=1.0)  # no guard hides a wrong marking
    sync_ok(integration)
    clean = snapshot()

    bitbucket.faults_on_listing([None, *faults])  # from the second page on
    run = sync(integration, full=True)  # a full listing: the one that may mark records gone

    assert_finished_cleanly(run)
    if error is None:
        assert run.state == SyncState.SUCCEEDED
    else:
        assert run.state == SyncState.FAILED and error in run.error
    assert bitbucket.faults.injected == Counter(faults)
    assert not DiscoveredEntity.objects.filter(state=DiscoveredState.GONE).exists()
    assert catalog_diff(clean, snapshot()) == {}  # nothing lost, nothing gone

    bitbucket.faults_off()
    sync_ok(integration, full=True)
    assert catalog_diff(clean, snapshot()) == {}
