"""Incremental listings between full ones, and the sweep that catches PR-only activity."""

from datetime import timedelta

import pytest
from django.utils import timezone

from integrations.choices import DiscoveredState, SyncMode
from integrations.engine import sync as sync_module
from integrations.models import DiscoveredEntity, Integration, PullRequest
from tests.integrations.engine.conftest import sync_ok
from tests.integrations.fake_provider import World


def bump(repo, world: World, minutes: int = 1) -> None:
    repo.updated_on = timezone.now() + timedelta(minutes=minutes)


@pytest.mark.django_db
def test_first_run_is_full_then_runs_list_only_what_changed(world, make_integration):
    world.honour_since = True
    for index in range(5):
        world.add_repo(f"repo-{index}", description="old")
    integration = make_integration()
    first = sync_ok(integration)
    assert first.mode == SyncMode.FULL
    world.repos[2].description = "new"
    bump(world.repos[2], world)
    second = sync_ok(integration)
    assert second.mode == SyncMode.INCREMENTAL
    assert DiscoveredEntity.objects.get(name="repo-2").data["description"] == "new"
    # Only the changed repository was listed: the others were not seen by this run.
    seen = DiscoveredEntity.objects.filter(last_seen_at__gte=second.started_at)
    assert list(seen.values_list("name", flat=True)) == ["repo-2"]


@pytest.mark.django_db
def test_an_incremental_run_never_marks_anything_gone(world, make_integration):
    for index in range(4):
        world.add_repo(f"repo-{index}")
    integration = make_integration()
    sync_ok(integration)
    del world.repos[0]
    assert sync_ok(integration).mode == SyncMode.INCREMENTAL
    assert not DiscoveredEntity.objects.filter(state=DiscoveredState.GONE).exists()
    full = sync_ok(integration, full=True)
    assert full.mode == SyncMode.FULL and full.gone == 1


@pytest.mark.django_db
def test_a_full_listing_runs_again_once_the_interval_has_passed(world, make_integration):
    world.add_repo("repo")
    integration = make_integration(full_sync_interval=60)
    sync_ok(integration)
    assert sync_ok(integration).mode == SyncMode.INCREMENTAL
    Integration.objects.filter(pk=integration.pk).update(
        last_full_sync_at=timezone.now() - timedelta(minutes=61)
    )
    assert sync_ok(integration).mode == SyncMode.FULL


@pytest.mark.django_db
def test_the_sweep_picks_up_pull_requests_of_repositories_that_did_not_change(
    world, make_integration, monkeypatch
):
    monkeypatch.setattr(sync_module, "SWEEP_PER_RUN", 2)
    repos = [world.add_repo(f"repo-{index}", prs=1) for index in range(3)]
    integration = make_integration(full_sync_interval=60)
    sync_ok(integration)
    for repo in repos:  # PR activity does not touch the repository's updated_on
        World.add_pull_request(repo, 1, when=timezone.now() - timedelta(minutes=5))
    assert PullRequest.objects.count() == 3
    # Not due yet: nothing swept.
    sync_ok(integration)
    assert PullRequest.objects.count() == 3
    later = timezone.now() + timedelta(minutes=61)
    monkeypatch.setattr(sync_module.timezone, "now", lambda: later)
    sync_ok(integration)  # the two least recently swept
    assert PullRequest.objects.count() == 5
    sync_ok(integration)  # the last one
    assert PullRequest.objects.count() == 6


@pytest.mark.django_db
def test_full_sync_interval_is_validated(make_integration):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match="full_sync_interval"):
        make_integration(full_sync_interval=5)
