"""``repository_refresh`` re-reads one repository through the scheduled sync's own steps, and
``webhook_delivery_process`` turns a recorded delivery into one refresh."""

from datetime import timedelta

import pytest
from django.utils import timezone

from catalog.models import Entity
from integrations import tasks
from integrations.choices import DiscoveredState, IntegrationState, SyncMode, SyncState
from integrations.engine import targeted
from integrations.engine.sync import integration_sync
from integrations.models import (
    Commit,
    DiscoveredEntity,
    Integration,
    PullRequest,
    SyncRun,
    WebhookDelivery,
)
from integrations.providers.base import ProbeResult, ProviderAuthError, ProviderUnavailable
from tests.integrations.fake_provider import FakeProvider


def hold_claim(integration) -> SyncRun:
    """A scheduled run holding the integration's claim (as a running full sync does)."""
    holder = SyncRun.objects.create(integration=integration, trigger="schedule")
    Integration.objects.filter(pk=integration.pk).update(
        locked_by_run=holder.pk, locked_until=timezone.now() + timedelta(minutes=5)
    )
    return holder


def refresh(integration, repo, **kwargs) -> SyncRun:
    return targeted.repository_refresh(
        integration_id=integration.pk, external_id=repo.uid, name=repo.name, **kwargs
    )


def full_sync(integration) -> SyncRun:
    run = integration_sync(integration_id=integration.pk, trigger="manual", full=True)
    assert run.state == SyncState.SUCCEEDED, run.error
    return run


@pytest.fixture
def requests(monkeypatch):
    """Requests the fake provider makes, per method."""
    counts: dict[str, int] = {}
    for method in ("iter_repositories", "get_repository", "probe"):
        real = getattr(FakeProvider, method)

        def counted(self, *args, _real=real, _name=method, **kwargs):
            counts[_name] = counts.get(_name, 0) + 1
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(FakeProvider, method, counted)
    return counts


def test_unknown_repository_is_discovered_and_auto_imported(world, make_integration, requests):
    integration = make_integration(auto_import=True)
    repo = world.add_repo("billing", prs=3, commits=4, description="Invoices")

    run = refresh(integration, repo)

    assert (run.state, run.mode, run.trigger) == (
        SyncState.SUCCEEDED,
        SyncMode.REPOSITORY,
        "webhook",
    )
    assert (run.discovered, run.imported, run.pull_requests, run.commits) == (1, 1, 3, 4)
    row = DiscoveredEntity.objects.get(external_id=repo.uid)
    assert row.state == DiscoveredState.IMPORTED
    assert Entity.objects.get(name="billing").description == "Invoices"
    assert requests == {"get_repository": 1}  # one repository read, never a listing


def test_unknown_repository_is_only_discovered_without_auto_import(world, make_integration):
    integration = make_integration(auto_import=False)
    repo = world.add_repo("billing")
    assert refresh(integration, repo).imported == 0
    assert DiscoveredEntity.objects.get().state == DiscoveredState.DISCOVERED
    assert not Entity.objects.exists()


def test_known_repository_and_its_entity_are_updated(world, make_integration):
    integration = make_integration(auto_import=True)
    repo = world.add_repo("billing", description="Old")
    full_sync(integration)
    repo.description, repo.updated_on = "New", repo.updated_on + timedelta(hours=1)

    run = refresh(integration, repo)

    assert (run.discovered, run.refreshed) == (0, 1)
    assert DiscoveredEntity.objects.get().data["description"] == "New"
    assert Entity.objects.get(name="billing").description == "New"


def test_pull_request_activity_is_fetched_although_the_repository_did_not_change(
    world, make_integration
):
    integration = make_integration()
    repo = world.add_repo("billing", prs=2)
    full_sync(integration)
    world.add_pull_request(repo, 2, when=timezone.now())  # repository's updated_on unchanged

    run = refresh(integration, repo)

    assert run.pull_requests == 1
    assert PullRequest.objects.filter(external_id="3").exists()


def test_only_the_named_repository_is_touched(world, make_integration):
    integration = make_integration()
    repo, other = world.add_repo("billing", commits=1), world.add_repo("ledger", commits=1)
    full_sync(integration)
    world.add_commit(other, 5, when=timezone.now())
    before = DiscoveredEntity.objects.get(external_id=other.uid).last_seen_at

    refresh(integration, repo)

    assert DiscoveredEntity.objects.get(external_id=other.uid).last_seen_at == before
    assert Commit.objects.filter(discovered__external_id=other.uid).count() == 1


def test_refresh_leaves_the_schedule_and_listing_marks_alone(world, make_integration):
    integration = make_integration()
    repo = world.add_repo("billing")
    full_sync(integration)
    before = Integration.objects.values(
        "next_sync_at", "last_sync_at", "last_listing_at", "last_full_sync_at"
    ).get(pk=integration.pk)
    refresh(integration, repo)
    after = Integration.objects.values(*before).get(pk=integration.pk)
    assert after == before


def test_refresh_releases_the_claim(world, make_integration):
    integration = make_integration()
    refresh(integration, world.add_repo("billing"))
    assert Integration.objects.get(pk=integration.pk).locked_by_run is None


def test_deleted_repository_is_marked_gone_once_the_provider_confirms(
    world, make_integration, requests
):
    integration = make_integration()
    repo = world.add_repo("billing")
    full_sync(integration)
    world.repos.remove(repo)

    run = refresh(integration, repo)

    assert (run.state, run.gone) == (SyncState.SUCCEEDED, 1)
    assert DiscoveredEntity.objects.get().state == DiscoveredState.GONE
    assert requests["probe"] == 1


def test_not_found_is_not_gone_when_the_provider_is_unreachable_as_a_whole(
    world, make_integration, monkeypatch
):
    integration = make_integration()
    repo = world.add_repo("billing")
    full_sync(integration)
    world.repos.remove(repo)
    monkeypatch.setattr(FakeProvider, "probe", lambda self: ProbeResult(False, "token revoked"))

    run = refresh(integration, repo)

    assert run.state == SyncState.FAILED and "token revoked" in run.error
    assert DiscoveredEntity.objects.get().state == DiscoveredState.DISCOVERED


def test_not_found_and_unknown_changes_nothing(world, make_integration):
    integration = make_integration()
    run = targeted.repository_refresh(integration_id=integration.pk, external_id="{nope}")
    assert run.state == SyncState.SUCCEEDED and "not known" in run.message
    assert not DiscoveredEntity.objects.exists()


def test_repository_outside_the_target_is_not_discovered(world, make_integration, monkeypatch):
    integration = make_integration()
    monkeypatch.setattr(FakeProvider, "in_target", lambda self, record: False, raising=False)
    run = refresh(integration, world.add_repo("billing"))
    assert "not selected" in run.message
    assert not DiscoveredEntity.objects.exists()


def test_known_repository_moved_out_of_the_target_is_gone(world, make_integration, monkeypatch):
    integration = make_integration()
    repo = world.add_repo("billing")
    full_sync(integration)
    monkeypatch.setattr(FakeProvider, "in_target", lambda self, record: False, raising=False)
    assert refresh(integration, repo).gone == 1
    assert DiscoveredEntity.objects.get().state == DiscoveredState.GONE


def test_suspended_integration_is_skipped(world, make_integration):
    integration = make_integration(state=IntegrationState.SUSPENDED)
    run = refresh(integration, world.add_repo("billing"))
    assert run.state == SyncState.SKIPPED
    assert not DiscoveredEntity.objects.exists()


def test_direct_refresh_while_another_run_holds_the_claim_is_skipped_naming_it(
    world, make_integration
):
    integration = make_integration()
    holder = hold_claim(integration)
    run = refresh(integration, world.add_repo("billing"))
    assert (run.state, run.holder_id) == (SyncState.SKIPPED, holder.pk)
    assert f"another sync (run {holder.pk}) is running" in run.message
    assert not DiscoveredEntity.objects.exists()
    assert Integration.objects.get(pk=integration.pk).locked_by_run == holder.pk


def test_provider_error_fails_the_run_and_releases_the_claim(world, make_integration, monkeypatch):
    integration = make_integration()

    def broken(self, external_id, name=None):
        raise ProviderUnavailable("Bitbucket kept failing")

    monkeypatch.setattr(FakeProvider, "get_repository", broken)
    run = refresh(integration, world.add_repo("billing"))
    assert run.state == SyncState.FAILED and "kept failing" in run.error
    assert Integration.objects.get(pk=integration.pk).locked_by_run is None


# -- deliveries ----------------------------------------------------------------------------------


def delivery(integration, repo, delivery_id="d-1", **values) -> WebhookDelivery:
    return WebhookDelivery.objects.create(
        integration=integration,
        delivery_id=delivery_id,
        event="repo:push",
        repository_external_id=repo.uid,
        repository_name=repo.name,
        **values,
    )


def test_delivery_is_processed_and_records_its_run(world, make_integration):
    integration = make_integration()
    item = delivery(integration, world.add_repo("billing"))
    assert targeted.webhook_delivery_process(delivery_id=item.pk) == "processed"
    item.refresh_from_db()
    run = SyncRun.objects.get(mode=SyncMode.REPOSITORY)
    assert item.outcome == "processed"
    assert item.detail == f"Covered by run {run.pk}: billing: discovered"
    assert (run.trigger, run.state, run.discovered) == ("webhook", SyncState.SUCCEEDED, 1)
    assert item.latency is not None


def test_one_refresh_covers_every_queued_delivery_of_that_repository(world, make_integration):
    integration = make_integration()
    repo, other = world.add_repo("billing"), world.add_repo("ledger")
    first, second = delivery(integration, repo, "d-1"), delivery(integration, repo, "d-2")
    unrelated = delivery(integration, other, "d-3")

    targeted.webhook_delivery_process(delivery_id=first.pk)

    assert WebhookDelivery.objects.get(pk=second.pk).outcome == "processed"
    assert WebhookDelivery.objects.get(pk=unrelated.pk).outcome == "queued"
    assert targeted.webhook_delivery_process(delivery_id=second.pk) == "processed"
    assert SyncRun.objects.filter(mode=SyncMode.REPOSITORY).count() == 1


def test_failed_refresh_marks_the_delivery_failed(world, make_integration, monkeypatch):
    integration = make_integration()
    item = delivery(integration, world.add_repo("billing"))

    def refused(self, external_id, name=None):
        raise ProviderAuthError("Authentication failed")

    monkeypatch.setattr(FakeProvider, "get_repository", refused)
    assert targeted.webhook_delivery_process(delivery_id=item.pk) == "failed"
    assert "Authentication failed" in WebhookDelivery.objects.get().detail


def test_delivery_while_another_run_holds_the_claim_coalesces_and_names_that_run(
    world, make_integration
):
    integration = make_integration()
    item = delivery(integration, world.add_repo("billing"))
    holder = hold_claim(integration)

    assert targeted.webhook_delivery_process(delivery_id=item.pk) == "coalesced"

    item.refresh_from_db()
    assert item.outcome == "coalesced" and item.processed_at is None
    assert item.detail == f"Waiting for run {holder.pk}, which refreshes it before it ends"
    assert not SyncRun.objects.filter(mode=SyncMode.REPOSITORY).exists()  # no skipped runs


def test_the_claim_holder_drains_coalesced_deliveries_before_it_releases(world, make_integration):
    integration = make_integration()
    repo = world.add_repo("billing", description="New")
    item = delivery(integration, repo)
    holder = hold_claim(integration)
    targeted.webhook_delivery_process(delivery_id=item.pk)

    assert targeted.webhook_coalesced_drain(run=holder, provider=None, tick=None) == 1

    item.refresh_from_db()
    assert item.outcome == "processed"
    assert item.detail == f"Covered by run {holder.pk}: billing: discovered"
    assert DiscoveredEntity.objects.get().data["description"] == "New"
    assert holder.discovered == 1  # counted on the holder's run (saved when it finishes)


def test_drain_refreshes_each_repository_once_in_received_order(
    world, make_integration, requests, monkeypatch
):
    integration = make_integration()
    repos = [world.add_repo(name) for name in ("billing", "ledger", "audit")]
    holder = hold_claim(integration)
    order = [repos[1], repos[0], repos[1], repos[2], repos[0], repos[1]]
    items = [delivery(integration, repo, f"d-{i}") for i, repo in enumerate(order)]
    for item in items:
        assert targeted.webhook_delivery_process(delivery_id=item.pk) == "coalesced"
    read = []
    real = FakeProvider.get_repository
    monkeypatch.setattr(
        FakeProvider,
        "get_repository",
        lambda self, external_id, name=None: read.append(name) or real(self, external_id, name),
    )

    assert targeted.webhook_coalesced_drain(run=holder, provider=None, tick=None) == 3

    assert read == ["ledger", "billing", "audit"]
    outcomes = WebhookDelivery.objects.values_list("outcome", flat=True)
    assert set(outcomes) == {"processed"}


def test_one_failing_repository_does_not_stop_the_drain(world, make_integration, monkeypatch):
    integration = make_integration()
    broken, fine = world.add_repo("broken"), world.add_repo("fine")
    holder = hold_claim(integration)
    for i, repo in enumerate((broken, fine, broken)):
        targeted.webhook_delivery_process(delivery_id=delivery(integration, repo, f"d-{i}").pk)
    real = FakeProvider.get_repository

    def flaky(self, external_id, name=None):
        if name == "broken":
            raise ProviderUnavailable("Bitbucket kept failing")
        return real(self, external_id, name)

    monkeypatch.setattr(FakeProvider, "get_repository", flaky)

    assert targeted.webhook_coalesced_drain(run=holder, provider=None, tick=None) == 2

    by_repo = dict(WebhookDelivery.objects.values_list("repository_name", "outcome"))
    assert by_repo == {"broken": "failed", "fine": "processed"}
    failed = WebhookDelivery.objects.filter(repository_name="broken")
    assert {d.detail for d in failed} == {f"Run {holder.pk} failed: Bitbucket kept failing"}
    assert DiscoveredEntity.objects.get().name == "fine"


def test_a_run_that_lost_its_claim_drains_nothing(world, make_integration):
    integration = make_integration()
    item = delivery(integration, world.add_repo("billing"))
    holder = hold_claim(integration)
    targeted.webhook_delivery_process(delivery_id=item.pk)
    Integration.objects.filter(pk=integration.pk).update(locked_by_run=holder.pk + 1000)

    assert targeted.webhook_coalesced_drain(run=holder, provider=None, tick=None) == 0

    assert WebhookDelivery.objects.get().outcome == "coalesced"
    assert not DiscoveredEntity.objects.exists()


def test_a_released_claim_is_followed_up_by_a_run_that_drains(world, make_integration):
    integration = make_integration()
    item = delivery(integration, world.add_repo("billing"))
    holder = hold_claim(integration)
    targeted.webhook_delivery_process(delivery_id=item.pk)
    Integration.objects.filter(pk=integration.pk).update(locked_by_run=None, locked_until=None)

    run = targeted.webhook_coalesced_followup(integration_id=integration.pk)

    assert (run.trigger, run.mode, run.state) == ("webhook", SyncMode.REPOSITORY, "succeeded")
    assert run.pk != holder.pk
    assert run.message == "Refreshed 1 repository named by coalesced webhook deliveries"
    item.refresh_from_db()
    assert (item.outcome, item.detail) == (
        "processed",
        f"Covered by run {run.pk}: billing: discovered",
    )
    assert Integration.objects.get(pk=integration.pk).locked_by_run is None
    assert targeted.webhook_coalesced_followup(integration_id=integration.pk) is None


def test_a_repository_refresh_drains_the_coalesced_deliveries_before_releasing(
    world, make_integration
):
    integration = make_integration()
    billing, ledger = world.add_repo("billing"), world.add_repo("ledger")
    hold_claim(integration)
    item = delivery(integration, ledger)
    targeted.webhook_delivery_process(delivery_id=item.pk)
    Integration.objects.filter(pk=integration.pk).update(locked_by_run=None, locked_until=None)

    run = refresh(integration, billing)

    assert run.message == (
        "billing: discovered; refreshed 1 repository named by coalesced webhook deliveries"
    )
    assert run.discovered == 2
    assert WebhookDelivery.objects.get().detail == f"Covered by run {run.pk}: ledger: discovered"
    assert SyncRun.objects.filter(mode=SyncMode.REPOSITORY).count() == 1  # no follow-up needed


def test_a_full_sync_refreshes_a_delivery_that_arrived_while_it_ran(world, make_integration):
    """The delivery arrives (in-process task) while the full sync is listing; the sync
    refreshes the repository before it ends, after the change the delivery announced."""
    integration = make_integration()
    repo = world.add_repo("billing", description="Old")
    item = delivery(integration, repo)
    real = FakeProvider.iter_repositories

    def listing_with_a_delivery(self, since=None, **options):
        for page in real(self, since=since, **options):
            yield page
            repo.description, repo.updated_on = "New", repo.updated_on + timedelta(hours=1)
            assert tasks.webhook_delivery_process.delay(item.pk).get() == "coalesced"

    FakeProvider.iter_repositories = listing_with_a_delivery
    try:
        run = full_sync(integration)
    finally:
        FakeProvider.iter_repositories = real

    item.refresh_from_db()
    assert (item.outcome, item.detail) == (
        "processed",
        f"Covered by run {run.pk}: billing: updated",
    )
    assert DiscoveredEntity.objects.get().data["description"] == "New"
    assert not SyncRun.objects.filter(mode=SyncMode.REPOSITORY).exists()
    assert Integration.objects.get(pk=integration.pk).locked_by_run is None


def test_coalesced_deliveries_of_a_suspended_integration_are_ignored(world, make_integration):
    integration = make_integration()
    item = delivery(integration, world.add_repo("billing"))
    hold_claim(integration)
    targeted.webhook_delivery_process(delivery_id=item.pk)
    Integration.objects.filter(pk=integration.pk).update(
        state=IntegrationState.SUSPENDED, locked_by_run=None, locked_until=None
    )
    assert targeted.webhook_coalesced_followup(integration_id=integration.pk) is None
    assert WebhookDelivery.objects.get().outcome == "ignored"


def test_delivery_for_a_since_suspended_integration_is_ignored(world, make_integration):
    integration = make_integration()
    item = delivery(integration, world.add_repo("billing"))
    Integration.objects.filter(pk=integration.pk).update(state=IntegrationState.SUSPENDED)
    assert targeted.webhook_delivery_process(delivery_id=item.pk) == "ignored"


def test_processed_delivery_is_not_processed_again(world, make_integration):
    integration = make_integration()
    item = delivery(integration, world.add_repo("billing"))
    targeted.webhook_delivery_process(delivery_id=item.pk)
    targeted.webhook_delivery_process(delivery_id=item.pk)
    assert SyncRun.objects.filter(mode=SyncMode.REPOSITORY).count() == 1


def test_task_never_re_enqueues_a_delivery_that_coalesced(world, make_integration, monkeypatch):
    integration = make_integration()
    item = delivery(integration, world.add_repo("billing"))
    hold_claim(integration)
    scheduled = []
    monkeypatch.setattr(
        tasks.webhook_delivery_process, "apply_async", lambda *a, **kw: scheduled.append(kw)
    )
    conf = tasks.webhook_delivery_process.app.conf
    conf.task_always_eager = False  # as on a real worker
    try:
        assert tasks.webhook_delivery_process.run(item.pk) == "coalesced"
    finally:
        conf.task_always_eager = True
    assert scheduled == []


def test_in_process_task_coalesces_rather_than_skipping(world, make_integration):
    integration = make_integration()
    item = delivery(integration, world.add_repo("billing"))
    hold_claim(integration)
    assert tasks.webhook_delivery_process.delay(item.pk).get() == "coalesced"
