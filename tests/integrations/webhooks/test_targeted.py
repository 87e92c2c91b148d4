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


def test_claim_held_by_a_full_sync_defers_the_refresh(world, make_integration):
    integration = make_integration()
    holder = SyncRun.objects.create(integration=integration, trigger="schedule")
    Integration.objects.filter(pk=integration.pk).update(
        locked_by_run=holder.pk, locked_until=timezone.now() + timedelta(minutes=5)
    )
    run = refresh(integration, world.add_repo("billing"))
    assert (run.state, run.holder_id) == (SyncState.SKIPPED, holder.pk)
    assert "deferred" in run.message
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
    assert targeted.webhook_delivery_process(delivery_id=item.pk).outcome == "processed"
    item.refresh_from_db()
    run = SyncRun.objects.get(mode=SyncMode.REPOSITORY)
    assert item.outcome == "processed" and f"Run {run.pk}" in item.detail
    assert item.latency is not None


def test_one_refresh_covers_every_queued_delivery_of_that_repository(world, make_integration):
    integration = make_integration()
    repo, other = world.add_repo("billing"), world.add_repo("ledger")
    first, second = delivery(integration, repo, "d-1"), delivery(integration, repo, "d-2")
    unrelated = delivery(integration, other, "d-3")

    targeted.webhook_delivery_process(delivery_id=first.pk)

    assert WebhookDelivery.objects.get(pk=second.pk).outcome == "processed"
    assert WebhookDelivery.objects.get(pk=unrelated.pk).outcome == "queued"
    assert targeted.webhook_delivery_process(delivery_id=second.pk).outcome == "processed"
    assert SyncRun.objects.filter(mode=SyncMode.REPOSITORY).count() == 1


def test_failed_refresh_marks_the_delivery_failed(world, make_integration, monkeypatch):
    integration = make_integration()
    item = delivery(integration, world.add_repo("billing"))

    def refused(self, external_id, name=None):
        raise ProviderAuthError("Authentication failed")

    monkeypatch.setattr(FakeProvider, "get_repository", refused)
    assert targeted.webhook_delivery_process(delivery_id=item.pk).outcome == "failed"
    assert "Authentication failed" in WebhookDelivery.objects.get().detail


def test_delivery_waits_while_another_run_holds_the_integration(world, make_integration):
    integration = make_integration()
    item = delivery(integration, world.add_repo("billing"))
    holder = SyncRun.objects.create(integration=integration, trigger="schedule")
    Integration.objects.filter(pk=integration.pk).update(
        locked_by_run=holder.pk, locked_until=timezone.now() + timedelta(minutes=5)
    )

    result = targeted.webhook_delivery_process(delivery_id=item.pk)

    assert result.outcome == "queued"
    assert targeted.DEFER_BEHIND_LISTING <= result.retry_in <= 2 * targeted.DEFER_BEHIND_LISTING
    assert WebhookDelivery.objects.get().outcome == "queued"
    assert not SyncRun.objects.filter(mode=SyncMode.REPOSITORY).exists()


def test_delivery_that_cannot_wait_is_skipped_for_the_scheduled_sync(world, make_integration):
    integration = make_integration()
    item = delivery(integration, world.add_repo("billing"))
    holder = SyncRun.objects.create(integration=integration, trigger="schedule")
    Integration.objects.filter(pk=integration.pk).update(
        locked_by_run=holder.pk, locked_until=timezone.now() + timedelta(minutes=5)
    )
    result = targeted.webhook_delivery_process(delivery_id=item.pk, may_defer=False)
    assert result.outcome == "skipped"
    assert "next scheduled sync" in WebhookDelivery.objects.get().detail


def test_delivery_older_than_the_defer_window_stops_waiting(world, make_integration):
    integration = make_integration()
    item = delivery(integration, world.add_repo("billing"))
    WebhookDelivery.objects.filter(pk=item.pk).update(
        received_at=timezone.now() - targeted.DEFER_WINDOW - timedelta(seconds=1)
    )
    Integration.objects.filter(pk=integration.pk).update(
        locked_by_run=1, locked_until=timezone.now() + timedelta(minutes=5)
    )
    assert targeted.webhook_delivery_process(delivery_id=item.pk).outcome == "skipped"


def test_delivery_for_a_since_suspended_integration_is_ignored(world, make_integration):
    integration = make_integration()
    item = delivery(integration, world.add_repo("billing"))
    Integration.objects.filter(pk=integration.pk).update(state=IntegrationState.SUSPENDED)
    assert targeted.webhook_delivery_process(delivery_id=item.pk).outcome == "ignored"


def test_processed_delivery_is_not_processed_again(world, make_integration):
    integration = make_integration()
    item = delivery(integration, world.add_repo("billing"))
    targeted.webhook_delivery_process(delivery_id=item.pk)
    targeted.webhook_delivery_process(delivery_id=item.pk)
    assert SyncRun.objects.filter(mode=SyncMode.REPOSITORY).count() == 1


def test_task_re_enqueues_a_deferred_delivery_with_a_countdown(
    world, make_integration, monkeypatch
):
    integration = make_integration()
    item = delivery(integration, world.add_repo("billing"))
    Integration.objects.filter(pk=integration.pk).update(
        locked_by_run=1, locked_until=timezone.now() + timedelta(minutes=5)
    )
    scheduled = []
    monkeypatch.setattr(
        tasks.webhook_delivery_process,
        "apply_async",
        lambda args, countdown: scheduled.append((args, countdown)),
    )
    conf = tasks.webhook_delivery_process.app.conf
    conf.task_always_eager = False  # a real worker, which can wait
    try:
        assert tasks.webhook_delivery_process.run(item.pk) == "queued"
    finally:
        conf.task_always_eager = True
    assert scheduled and scheduled[0][0] == (item.pk, 1) and scheduled[0][1] >= 30


def test_in_process_task_does_not_wait(world, make_integration):
    integration = make_integration()
    item = delivery(integration, world.add_repo("billing"))
    Integration.objects.filter(pk=integration.pk).update(
        locked_by_run=1, locked_until=timezone.now() + timedelta(minutes=5)
    )
    assert tasks.webhook_delivery_process.delay(item.pk).get() == "skipped"
