"""One run per integration at a time: the claim, its expiry, and concurrent starts."""

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from integrations.choices import SyncState
from integrations.engine.sync import integration_sync
from integrations.models import DiscoveredEntity, Integration, SyncRun
from integrations.providers import registry
from tests.integrations.engine.conftest import sync, sync_ok
from tests.integrations.fake_provider import FakeProvider


def claim(integration: Integration, *, run_id: int, until) -> None:
    Integration.objects.filter(pk=integration.pk).update(locked_by_run=run_id, locked_until=until)


def test_live_claim_makes_another_run_skip_without_touching_anything(world, engine_integration):
    world.add_repo("svc")
    integration = engine_integration()
    claim(integration, run_id=4242, until=timezone.now() + timedelta(minutes=5))

    run = sync(integration)

    assert run.state == SyncState.SKIPPED
    assert "Another sync (run 4242) is running" in run.message
    assert not DiscoveredEntity.objects.exists()
    integration.refresh_from_db()
    assert integration.locked_by_run == 4242  # the skipped run does not release another's claim
    assert integration.last_sync_at is None


def test_stale_claim_of_a_crashed_worker_is_taken_over(world, engine_integration):
    world.add_repo("svc")
    integration = engine_integration()
    claim(integration, run_id=4242, until=timezone.now() - timedelta(seconds=1))

    run = sync_ok(integration)

    assert run.discovered == 1
    integration.refresh_from_db()
    assert (integration.locked_by_run, integration.locked_until) == (None, None)


def test_finished_run_releases_the_claim_and_schedules_the_next(world, engine_integration):
    world.add_repo("svc")
    integration = engine_integration(update_frequency="1h")
    run = sync_ok(integration)
    integration.refresh_from_db()
    assert integration.locked_by_run is None
    assert integration.next_sync_at - run.finished_at == pytest.approx(
        timedelta(hours=1), abs=timedelta(seconds=5)
    )


def test_failed_run_releases_the_claim(world, engine_integration):
    world.add_repo("svc")
    world.fail_after_pages = 0
    integration = engine_integration()
    run = sync(integration)
    assert run.state == SyncState.FAILED
    integration.refresh_from_db()
    assert integration.locked_by_run is None
    world.fail_after_pages = None
    sync_ok(integration)


def test_provider_that_cannot_be_loaded_fails_the_run_and_releases_the_claim(
    world, engine_integration
):
    integration = engine_integration()
    registry.unregister(FakeProvider.key)
    try:
        run = sync(integration)
    finally:
        registry.register(FakeProvider)
    assert run.state == SyncState.FAILED
    assert "Unknown provider 'fake'" in run.error
    assert run.finished_at is not None
    integration.refresh_from_db()
    assert integration.locked_by_run is None


class BlockingProvider(FakeProvider):
    """Holds the repository listing until the test releases it, so two runs overlap."""

    entered: threading.Event
    release: threading.Event

    def iter_repositories(self, since=None, known=None):
        self.entered.set()
        if not self.release.wait(timeout=20):
            raise RuntimeError("the test never released the listing")
        yield from super().iter_repositories(since, known)


@pytest.mark.django_db(transaction=True)
def test_two_syncs_started_at_once_one_works_the_other_is_skipped(world, engine_integration):
    if connection.vendor != "postgresql":
        pytest.skip(
            "needs PostgreSQL: SQLite serialises writers on one file, so two connections "
            "cannot race for the claim (run with DATABASE_URL=postgres://...)"
        )
    for index in range(7):
        world.add_repo(f"svc-{index}")
    world.pagelen = 3
    integration = engine_integration()
    BlockingProvider.entered, BlockingProvider.release = threading.Event(), threading.Event()
    start = threading.Barrier(2)
    runs: list[SyncRun] = []
    errors: list[BaseException] = []

    def run_sync() -> None:
        try:
            provider = BlockingProvider(connector=integration.connector, integration=integration)
            start.wait(timeout=10)
            runs.append(
                integration_sync(integration_id=integration.pk, trigger="manual", provider=provider)
            )
        except BaseException as exc:  # noqa: BLE001 — reported by the main thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run_sync) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        # Release the listing only once the other run has been recorded as skipped: if both
        # runs had claimed the integration, no skip would ever come and the test fails.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if SyncRun.objects.filter(integration=integration, state=SyncState.SKIPPED).exists():
                break
            time.sleep(0.05)
        # The winner may reach its listing after the loser was skipped (a loaded machine):
        # wait for it rather than assume it.
        assert BlockingProvider.entered.wait(timeout=15)
    finally:
        BlockingProvider.release.set()
        for thread in threads:
            thread.join(timeout=30)
    assert not errors
    states = sorted(run.state for run in runs)
    assert states == [SyncState.SKIPPED, SyncState.SUCCEEDED]
    worker = next(run for run in runs if run.state == SyncState.SUCCEEDED)
    skipped = next(run for run in runs if run.state == SyncState.SKIPPED)
    assert f"Another sync (run {worker.pk}) is running" in skipped.message
    assert worker.discovered == 7
    assert DiscoveredEntity.objects.filter(integration=integration).count() == 7
    integration.refresh_from_db()
    assert integration.locked_by_run is None
