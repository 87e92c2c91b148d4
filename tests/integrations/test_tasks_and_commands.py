import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from integrations import services
from integrations.management.commands.sync import error_summary_lines, run_outcome
from integrations.models import DiscoveredEntity, Integration, SyncRun
from integrations.tasks import enqueue_due_integrations, sync_enqueue, sync_integration


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


@pytest.mark.django_db
def test_sync_command_full_lists_everything_though_no_full_listing_is_due(world, make_integration):
    world.add_repo("kept")
    world.add_repo("removed")
    make_integration("acme")
    call_command("sync", "acme", stdout=io.StringIO(), stderr=io.StringIO())
    world.repos.pop()
    out = io.StringIO()
    call_command("sync", "acme", stdout=out, stderr=io.StringIO())
    # Only what changed is listed: nothing can be known to be gone.
    assert "0 gone" in out.getvalue() and "(changed repositories)" in out.getvalue()
    out = io.StringIO()
    call_command("sync", "acme", "--full", stdout=out, stderr=io.StringIO())
    assert "Sync of acme succeeded:" in out.getvalue()
    assert "1 gone" in out.getvalue() and "(full listing)" in out.getvalue()
    assert list(SyncRun.objects.order_by("pk").values_list("mode", flat=True)) == [
        "full",
        "incremental",
        "full",
    ]
    assert DiscoveredEntity.objects.get(name="removed").state == "gone"


@pytest.mark.django_db
def test_sync_task_and_enqueue_pass_full_through(
    world, make_integration, django_capture_on_commit_callbacks
):
    world.add_repo("one")
    integration = make_integration("acme")
    sync_integration(integration.pk, "manual")
    assert SyncRun.objects.latest("pk").mode == "full"  # the first listing is always full
    sync_integration(integration.pk, "manual")
    assert SyncRun.objects.latest("pk").mode == "incremental"
    with django_capture_on_commit_callbacks(execute=True):
        sync_enqueue(integration_id=integration.pk, trigger="manual", full=True)
    assert SyncRun.objects.latest("pk").mode == "full"


def _run(**values) -> SyncRun:
    return SyncRun(trigger="manual", **values)


SUMMARY = [
    {
        "stage": "pull_requests",
        "reason": "not permitted (403)",
        "hint": "Grant the credential read access to pull requests.",
        "count": 7,
        "examples": ["a", "b", "c", "d", "e"],
    },
    {"stage": "import", "reason": "invalid entity", "hint": "", "count": 1, "examples": ["f"]},
]


@pytest.mark.parametrize(
    ("values", "outcome"),
    [
        ({"state": "succeeded"}, "succeeded"),
        ({"state": "succeeded", "errors": 1}, "succeeded with 1 error"),
        ({"state": "succeeded", "errors": 40}, "succeeded with 40 errors"),
        ({"state": "partial", "errors": 1}, "partial: 1 repository could not be handled"),
        ({"state": "partial", "errors": 8}, "partial: 8 repositories could not be handled"),
        ({"state": "failed"}, "failed"),
        ({"state": "skipped"}, "skipped"),
    ],
)
def test_sync_outcome_in_words(values, outcome):
    assert run_outcome(_run(**values)) == outcome


def test_sync_errors_are_listed_grouped_with_examples_and_hints():
    assert error_summary_lines(_run(state="partial", errors=8, error_summary=SUMMARY)) == [
        "  pull_requests: not permitted (403) — 7 (a, b, c, d, e and 2 more)",
        "    Grant the credential read access to pull requests.",
        "  import: invalid entity — 1 (f)",
    ]
    assert error_summary_lines(_run(state="succeeded")) == []


@pytest.mark.django_db
def test_check_integration_reports_the_last_sync_and_what_needs_attention(world, make_integration):
    integration = make_integration("acme")
    out = io.StringIO()
    call_command("check_integration", "acme", stdout=out)
    assert "Last sync: never" in out.getvalue()

    SyncRun.objects.create(
        integration=integration,
        trigger="schedule",
        state="partial",
        errors=8,
        error_summary=SUMMARY,
        finished_at=timezone.now(),
    )
    for name in ("a", "b"):
        DiscoveredEntity.objects.create(
            integration=integration,
            external_id=name,
            name=name,
            kind="Component",
            last_seen_at=timezone.now(),
            processing_errors={"pull_requests": {"message": "403", "since": "2026-01-01"}},
            error_since=timezone.now(),
        )
    out = io.StringIO()
    call_command("check_integration", "acme", stdout=out)
    text = out.getvalue()
    assert "Last sync: partial: 8 repositories could not be handled (schedule, " in text
    assert "  pull_requests: not permitted (403) — 7 (a, b, c, d, e and 2 more)" in text
    assert (
        f"2 repositories need attention: the Discovered view's filter, or "
        f"GET /api/integrations/{integration.pk}/discovered?state=error"
    ) in text
    assert "OK:" in text
