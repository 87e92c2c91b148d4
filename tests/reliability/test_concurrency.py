"""Concurrency: the scheduled, manual and webhook-triggered syncs of one integration racing, and
two integrations over one workspace side by side (PostgreSQL only: each thread has its own
connection; skipped on SQLite, failing with ``CI=true``).

The three triggers go through their real entry points at the same moment: the beat task
(``enqueue_due_integrations``) in the test's thread, an admin's ``POST /api/integrations/<id>/
sync`` and a signed Bitbucket delivery ``POST /webhooks/bitbucket-cloud/<id>`` to a live server
(each request in its own server thread); tasks run in process, so every sync runs in the thread
that triggered it. The engine's claim and release are wrapped (calling through) to record when
each run held the integration.
"""

import threading
import time
from collections import defaultdict
from datetime import timedelta
from functools import partial

import httpx
import pytest
from django.core.cache import cache
from django.db import connection
from django.utils import timezone

from catalog.models import Entity
from integrations.choices import SyncMode, SyncState, WebhookOutcome
from integrations.engine import sync as sync_module
from integrations.engine import targeted
from integrations.engine.sync import integration_sync
from integrations.models import (
    DiscoveredEntity,
    ImportedEntity,
    Integration,
    SyncRun,
    WebhookDelivery,
)
from integrations.providers import registry
from integrations.tasks import enqueue_due_integrations
from portal.models import ApiToken
from tests.integrations.catalog_snapshot import assert_same_catalog, snapshot, wipe
from tests.integrations.engine.conftest import sync_ok
from tests.integrations.webhooks.conftest import cloud_push_delivery, webhook_url
from tests.reliability.process_helpers import (
    WORKSPACE,
    cloud_sandbox_integration,
    duplicate_rows,
    require_postgres,
)
from tests.sandbox.fixtures import cloud_world_factory

pytestmark = pytest.mark.django_db(transaction=True)

ROUND_SECONDS = 60  # a round whose three syncs have not all finished by then is deadlocked


@pytest.fixture
def sandbox(make_cloud_sandbox, settings):
    require_postgres()
    settings.LANTERN_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    cache.clear()  # client-side request budgets live in the cache
    yield make_cloud_sandbox(cloud_world_factory(5, repos=24, prs_per_repo=3, commits_per_repo=3))
    cache.clear()


class ClaimLog:
    """When each run held its integration: the engine's claim and release, wrapped. A run's
    interval starts once its claim succeeded and ends before its release, so it lies inside
    the time the database says the run held the claim."""

    def __init__(self, monkeypatch):
        self._lock = threading.Lock()
        self._open: dict[int, tuple] = {}
        self.intervals: list[tuple[float, float, int, int, str]] = []
        self.claimed: dict[str, threading.Event] = defaultdict(threading.Event)
        for module in (sync_module, targeted):
            monkeypatch.setattr(module, "integration_claim", self._claim(module.integration_claim))
            monkeypatch.setattr(module, "claim_release", self._release(module.claim_release))

    def _claim(self, real):
        def claim(*, integration_id: int, run: SyncRun) -> bool:
            claimed = real(integration_id=integration_id, run=run)
            if claimed:
                with self._lock:
                    self._open[run.pk] = (time.monotonic(), integration_id, run.trigger)
                self.claimed[run.trigger].set()
            return claimed

        return claim

    def _release(self, real):
        def release(run: SyncRun) -> None:
            with self._lock:
                opened = self._open.pop(run.pk, None)
                if opened is not None:
                    start, integration_id, trigger = opened
                    self.intervals.append(
                        (start, time.monotonic(), integration_id, run.pk, trigger)
                    )
            real(run)

        return release

    def overlaps(self, integration_id: int) -> list[tuple]:
        held = sorted(i for i in self.intervals if i[2] == integration_id)
        return [(a, b) for a, b in zip(held, held[1:], strict=False) if b[0] < a[1]]


def in_thread(action, errors: list) -> threading.Thread:
    def run() -> None:
        try:
            action()
        except BaseException as exc:  # noqa: BLE001 - reported by the test's thread
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.fixture
def admin_token(make_user) -> str:
    user = make_user("admin", "integrations.edit_integration")
    return ApiToken.objects.issue(user=user, name="concurrency")[1]


def race(triggers: dict, *, claims: ClaimLog, leader: str | None) -> dict[str, object]:
    """Call every trigger in a thread of its own, together (or the others the moment
    ``leader``'s run holds the claim); returns what each returned. Fails if any has not
    returned within ROUND_SECONDS: a deadlock."""
    for event in claims.claimed.values():
        event.clear()
    start = threading.Barrier(len(triggers))
    results: dict[str, object] = {}
    errors: list[BaseException] = []

    def fire(trigger: str) -> None:
        start.wait(timeout=10)
        if leader is not None and trigger != leader:
            assert claims.claimed[leader].wait(timeout=ROUND_SECONDS), f"{leader} never ran"
        results[trigger] = triggers[trigger]()

    threads = [in_thread(lambda t=trigger: fire(t), errors) for trigger in triggers]
    deadline = time.monotonic() + ROUND_SECONDS
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    assert not any(thread.is_alive() for thread in threads), "deadlocked"
    assert not errors, errors
    return results


def status_of(request, *args, **kwargs) -> int:
    return request(*args, **kwargs).status_code


def assert_one_at_a_time(runs: list[SyncRun]) -> None:
    """Every run finished; each either ran or was skipped naming a run of the same round that
    ran; none failed (a deadlock or a duplicate key would fail it)."""
    ran = {run.pk for run in runs if run.state == SyncState.SUCCEEDED}
    assert ran, [(run.trigger, run.state, run.message) for run in runs]
    for run in runs:
        assert run.state in (SyncState.SUCCEEDED, SyncState.SKIPPED), (run.state, run.error)
        assert run.finished_at is not None
        if run.state == SyncState.SKIPPED:
            holder = int(run.message.split("(run ")[1].split(")")[0])
            assert holder in ran, run.message


@pytest.mark.parametrize("leaders", [(None, "webhook", "manual", "schedule", None)])
def test_scheduled_manual_and_webhook_syncs_race_one_at_a_time_to_the_clean_catalog(
    sandbox, live_server, admin_token, monkeypatch, leaders
):
    """Five rounds; before each, a push to one repository (so every round has work) and the
    integration made due. In rounds with a leader, the other two start the moment the leader
    holds the claim; otherwise all three start together."""
    integration = cloud_sandbox_integration(sandbox)
    claims = ClaimLog(monkeypatch)
    repos = [repo for repo in sandbox.world.iter_repositories() if repo.mainbranch]
    api = httpx.Client(base_url=live_server.url, timeout=ROUND_SECONDS)
    manual_sync = f"/api/integrations/{integration.pk}/sync"
    admin = {"Authorization": f"Bearer {admin_token}"}
    last_run = 0

    for round_no, leader in enumerate(leaders):
        repo = repos[round_no]
        sandbox.world.commits_push(workspace=WORKSPACE, slug=repo.slug, message=f"Round {round_no}")
        Integration.objects.filter(pk=integration.pk).update(
            next_sync_at=timezone.now() - timedelta(seconds=1)
        )
        raw, headers = cloud_push_delivery(integration, repo)

        results = race(
            {
                "schedule": enqueue_due_integrations,
                "manual": partial(status_of, api.post, manual_sync, headers=admin),
                "webhook": partial(
                    status_of, api.post, webhook_url(integration), content=raw, headers=headers
                ),
            },
            claims=claims,
            leader=leader,
        )

        assert results == {"schedule": 1, "manual": 202, "webhook": 202}, results
        runs = list(SyncRun.objects.filter(integration=integration, pk__gt=last_run))
        last_run = max(run.pk for run in runs)
        by_trigger = {run.trigger: run for run in runs}
        # A delivery that lost the race records no run of its own: the run holding the claim
        # refreshes its repository before it ends.
        assert sorted(by_trigger) in (["manual", "schedule"], ["manual", "schedule", "webhook"])
        assert len(runs) == len(by_trigger)
        assert_one_at_a_time(runs)
        if leader is not None:
            assert by_trigger[leader].state == SyncState.SUCCEEDED, round_no
        delivery = WebhookDelivery.objects.get(
            integration=integration, delivery_id=headers["X-Request-UUID"]
        )
        assert delivery.outcome == WebhookOutcome.PROCESSED, delivery.detail
        assert Integration.objects.get(pk=integration.pk).locked_by_run is None

    # One sync at a time: the intervals in which runs held the claim never overlap.
    assert claims.overlaps(integration.pk) == []
    assert {trigger for *_, trigger in claims.intervals} == {"schedule", "manual", "webhook"}
    full = SyncRun.objects.filter(
        integration=integration, state=SyncState.SUCCEEDED, mode=SyncMode.FULL
    )
    assert full.exists(), "no full listing won a round: nothing to compare with a clean run"
    assert duplicate_rows() == {}

    raced = snapshot()
    wipe()
    sync_ok(cloud_sandbox_integration(sandbox))
    assert_same_catalog(snapshot(), raced)


def test_two_integrations_over_one_workspace_sync_side_by_side(sandbox, monkeypatch):
    """``acme-a`` holds its claim (its listing waits) while ``acme-b`` syncs from start to end;
    then ``acme-a`` finishes. Each has its own records, pull requests, commits and runs."""
    first = cloud_sandbox_integration(sandbox, name="acme-a", auto_import=False)
    second = cloud_sandbox_integration(sandbox, name="acme-b", auto_import=False)
    claims = ClaimLog(monkeypatch)
    listing_reached, release = threading.Event(), threading.Event()
    provider = registry.for_integration(first)
    real_listing = provider.iter_repositories

    def held_listing(since=None, **options):
        listing_reached.set()
        assert release.wait(timeout=ROUND_SECONDS)
        yield from real_listing(since=since, **options)

    provider.iter_repositories = held_listing
    runs: dict[str, SyncRun] = {}
    errors: list[BaseException] = []
    thread = in_thread(
        lambda: runs.update(
            first=integration_sync(integration_id=first.pk, trigger="manual", provider=provider)
        ),
        errors,
    )
    try:
        assert listing_reached.wait(timeout=ROUND_SECONDS)
        runs["second"] = sync_ok(second)
        # ... all while the first still held its own claim.
        held = SyncRun.objects.get(integration=first, state=SyncState.RUNNING)
        assert Integration.objects.get(pk=first.pk).locked_by_run == held.pk
    finally:
        release.set()
        thread.join(timeout=ROUND_SECONDS)
    assert not thread.is_alive() and not errors, errors
    assert runs["first"].state == SyncState.SUCCEEDED, runs["first"].error

    (first_held,) = [i for i in claims.intervals if i[2] == first.pk]
    (second_held,) = [i for i in claims.intervals if i[2] == second.pk]
    assert first_held[0] < second_held[0] < second_held[1] < first_held[1]
    for integration in (first, second):
        rows = DiscoveredEntity.objects.filter(integration=integration)
        assert rows.count() == 24
        assert set(rows.values_list("state", flat=True)) == {"discovered"}
        assert SyncRun.objects.filter(integration=integration).count() == 1
    ids = {i.pk: set(i.discovered.values_list("external_id", flat=True)) for i in (first, second)}
    assert ids[first.pk] == ids[second.pk]
    assert duplicate_rows() == {}


def test_a_run_stalled_past_its_claim_stops_before_writing_when_another_took_over(
    sandbox, settings
):
    """Not dead, only stalled: the run's claim expires while its listing waits (as slow
    catalog-file reads would make it), another run takes over and finishes; when the stalled
    run gets its page it finds its claim gone and writes nothing."""
    settings.LANTERN_SYNC_LOCK_TTL = 1
    integration = cloud_sandbox_integration(sandbox)
    listing_reached, release = threading.Event(), threading.Event()
    provider = registry.for_integration(integration)
    real_listing = provider.iter_repositories

    def stalled_listing(since=None, **options):
        listing_reached.set()
        assert release.wait(timeout=ROUND_SECONDS)
        yield from real_listing(since=since, **options)

    provider.iter_repositories = stalled_listing
    runs: dict[str, SyncRun] = {}
    errors: list[BaseException] = []
    thread = in_thread(
        lambda: runs.update(
            stalled=integration_sync(
                integration_id=integration.pk, trigger="schedule", provider=provider
            )
        ),
        errors,
    )
    try:
        assert listing_reached.wait(timeout=ROUND_SECONDS)
        deadline = time.monotonic() + 5
        while Integration.objects.get(pk=integration.pk).locked_until >= timezone.now():
            assert time.monotonic() < deadline, "the stalled run's claim never expired"
            time.sleep(0.05)
        takeover = sync_ok(integration)
        stalled = SyncRun.objects.get(integration=integration, trigger="schedule")
        assert stalled.state == SyncState.FAILED
        assert stalled.error.endswith(f"Run {takeover.pk} took over."), stalled.error
        after_takeover = snapshot()
        # What the stalled run will list is newer than what the takeover wrote: writing it
        # would show.
        repo = next(sandbox.world.iter_repositories())
        sandbox.world.repository_update(
            workspace=WORKSPACE, slug=repo.slug, description="Changed after the takeover"
        )
    finally:
        release.set()
        thread.join(timeout=ROUND_SECONDS)
    assert not thread.is_alive() and not errors, errors

    stalled = runs["stalled"]
    assert stalled.state == SyncState.FAILED
    assert stalled.error.startswith("ClaimLost: Stopped: this run's claim expired"), stalled.error
    assert (stalled.discovered, stalled.imported) == (0, 0)
    assert snapshot() == after_takeover  # the stalled run wrote nothing
    assert Integration.objects.get(pk=integration.pk).locked_by_run is None


def test_two_auto_importing_integrations_over_one_workspace_sync_at_once_like_one_after_another(
    sandbox,
):
    """Run one after the other, the first registers every repository and the second merges
    into those entities (its correlation finds them). Started together, both runs correlate
    before either has written (their listings wait for each other): they must still both
    succeed and end as if run one after the other."""
    integrations = [cloud_sandbox_integration(sandbox, name=name) for name in ("acme-a", "acme-b")]
    both_listing = threading.Barrier(2)
    runs: list[SyncRun] = []
    errors: list[BaseException] = []

    def sync_together(integration: Integration) -> None:
        provider = registry.for_integration(integration)
        real_listing = provider.iter_repositories

        def listing(since=None, **options):
            both_listing.wait(timeout=ROUND_SECONDS)
            yield from real_listing(since=since, **options)

        provider.iter_repositories = listing
        runs.append(
            integration_sync(integration_id=integration.pk, trigger="manual", provider=provider)
        )

    threads = [
        in_thread(lambda integration=integration: sync_together(integration), errors)
        for integration in integrations
    ]
    for thread in threads:
        thread.join(timeout=ROUND_SECONDS)
    assert not errors, errors

    assert [run.state for run in runs] == [SyncState.SUCCEEDED] * 2, [run.error for run in runs]
    actions = sorted(
        tuple(sorted(set(ImportedEntity.objects.filter(integration=i).values_list("action"))))
        for i in integrations
    )
    assert actions == [(("MERGE",),), (("REGISTER",),)]
    assert ImportedEntity.objects.count() == 48 and Entity.objects.count() == 24
    assert duplicate_rows() == {}
