import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from integrations import services
from integrations.models import DiscoveredEntity, Integration, SyncRun
from integrations.tasks import enqueue_due_integrations


@pytest.mark.django_db(transaction=True)
def test_beat_enqueues_only_enabled_integrations_that_are_due(world, make_integration):
    world.add_repo("one")
    due = make_integration("due")
    later = make_integration("later")
    suspended = make_integration("suspended")
    Integration.objects.filter(pk=later.pk).update(next_sync_at=timezone.now() + timedelta(hours=1))
    services.integration_suspend(integration=suspended)

    assert enqueue_due_integrations() == 1

    assert list(SyncRun.objects.values_list("integration__name", "state")) == [("due", "succeeded")]
    due.refresh_from_db()
    assert due.next_sync_at > timezone.now() + timedelta(minutes=due.update_frequency - 1)
    # Just synced: no longer due.
    assert enqueue_due_integrations() == 0


@pytest.mark.django_db
def test_sync_command_prints_progress_and_a_summary(world, make_integration):
    for index in range(3):
        world.add_repo(f"repo-{index}", prs=2, commits=1)
    make_integration("acme")
    out, err = io.StringIO(), io.StringIO()
    call_command("sync", "acme", stdout=out, stderr=err)
    assert "Sync of acme succeeded: 3 discovered" in out.getvalue()
    assert "6 pull requests, 3 commits" in out.getvalue()
    assert "pages" in err.getvalue()
    assert DiscoveredEntity.objects.count() == 3


@pytest.mark.django_db
def test_sync_command_fails_loudly(world, make_integration):
    world.add_repo("repo")
    world.fail_after_pages = 0
    make_integration("acme")
    with pytest.raises(CommandError, match="injected crash"):
        call_command("sync", "acme", stdout=io.StringIO(), stderr=io.StringIO())
    with pytest.raises(CommandError, match="No integration named 'nope'"):
        call_command("sync", "nope")
