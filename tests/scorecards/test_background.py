"""Metrics and results are recomputed by a task sent after the writer's commit: one per
transaction that changed entities (in chunks), none for an entity a task already carries, and a
failed recompute stays visible (admin, API) until one succeeds."""

import pytest
from celery.signals import task_prerun
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from integrations.engine.sync import integration_sync
from scorecards import services
from scorecards.models import EntityMetric, PendingRefresh
from tests.integrations.conftest import component_doc


@pytest.fixture
def tasks_run():
    """The entity lists of the ``scorecards.entities_refresh`` tasks that ran (in process)."""
    seen: list[list[int]] = []

    def record(sender=None, args=(), **_):
        if sender is not None and sender.name == "scorecards.entities_refresh":
            seen.append(sorted(args[0]))

    task_prerun.connect(record, weak=False)
    yield seen
    task_prerun.disconnect(record)


def test_a_sync_sends_one_task_per_committed_write_and_leaves_nothing_pending(
    transactional_db, world, make_integration, tasks_run
):
    world.pagelen = 5
    for index in range(20):
        world.add_repo(f"svc-{index:02d}", prs=3, commits=2)
    integration = make_integration(auto_import=True, secondary_kinds=["pull_requests", "commits"])

    integration_sync(integration_id=integration.pk, trigger="manual")

    # four listing pages (their imports), then one write of each kind's ingested items (20 <
    # 200 repositories per write): six tasks for 20 entities, not one per entity or item
    ids = sorted(tasks_run[-1])
    assert [len(batch) for batch in tasks_run] == [5, 5, 5, 5, 20, 20]
    assert sorted(pk for batch in tasks_run[:4] for pk in batch) == ids
    assert not PendingRefresh.objects.exists()
    open_prs = EntityMetric.objects.filter(metric="open_prs")
    assert sorted(open_prs.values_list("value", flat=True)) == [1.0] * 20  # PR 0 of 3 is open


def test_an_entity_a_task_already_carries_is_not_sent_again(
    small_world, django_capture_on_commit_callbacks
):
    alpha, empty, single = (small_world["entities"][name] for name in ("alpha", "empty", "single"))
    with django_capture_on_commit_callbacks() as sent:
        assert services.refresh_request(entity_ids=[alpha.pk, empty.pk]) == 2
        assert services.refresh_request(entity_ids=[alpha.pk, single.pk]) == 1
    assert len(sent) == 2
    assert set(PendingRefresh.objects.values_list("entity_id", flat=True)) == {
        alpha.pk,
        empty.pk,
        single.pk,
    }
    for callback in sent:
        callback()
    assert not PendingRefresh.objects.exists()
    assert EntityMetric.objects.filter(entity=alpha, metric="open_prs").get().value == 2.0


def test_a_large_change_is_sent_in_chunks(
    small_world, make_entities, django_capture_on_commit_callbacks, monkeypatch
):
    monkeypatch.setattr(services, "REFRESH_TASK_ENTITIES", 2)
    entities = make_entities(*(component_doc(f"chunked-{i}") for i in range(5)))
    with django_capture_on_commit_callbacks() as sent:
        assert services.refresh_request(entity_ids=[e.pk for e in entities]) == 5
    assert len(sent) == 3


def _failing_compute(**_):
    raise RuntimeError("the metrics query was cancelled")


def test_a_failed_recompute_is_shown_until_a_retry_succeeds(
    small_world, django_capture_on_commit_callbacks, monkeypatch, admin_client
):
    alpha = small_world["entities"]["alpha"]
    monkeypatch.setattr(services, "metrics_compute", _failing_compute)
    with django_capture_on_commit_callbacks(execute=True):
        services.refresh_request(entity_ids=[alpha.pk])  # the task's error is logged, not raised
    pending = PendingRefresh.objects.get(entity=alpha)
    assert (pending.state, pending.error) == (
        "failed",
        "RuntimeError: the metrics query was cancelled",
    )
    client = APIClient()
    client.force_authenticate(User.objects.create_user("reader", password="x"))
    body = client.get(f"/api/scorecards/entities/component/default/{alpha.name}").json()
    assert body["refresh"]["state"] == "failed"
    assert body["refresh"]["error"] == "RuntimeError: the metrics query was cancelled"
    listing = admin_client.get("/admin/scorecards/pendingrefresh/").content.decode()
    assert "the metrics query was cancelled" in listing

    monkeypatch.undo()
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            "/admin/scorecards/pendingrefresh/",
            {"action": "recompute", "_selected_action": [alpha.pk]},
        )
    assert response.status_code == 302
    assert not PendingRefresh.objects.exists()
    body = client.get(f"/api/scorecards/entities/component/default/{alpha.name}").json()
    assert body["refresh"] is None
    assert body["metrics"]["open_prs"]["windows"]["0"]["value"] == 2.0


def test_a_recompute_the_broker_refuses_is_marked_failed_with_the_reason(
    small_world, django_capture_on_commit_callbacks, monkeypatch
):
    from kombu.exceptions import OperationalError

    from scorecards import tasks

    def refuse(*args):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(tasks.entities_refresh, "delay", refuse)
    alpha = small_world["entities"]["alpha"]
    with django_capture_on_commit_callbacks(execute=True):
        assert services.refresh_request(entity_ids=[alpha.pk]) == 1
    pending = PendingRefresh.objects.get(entity=alpha)
    assert (pending.state, pending.queued_at) == ("failed", None)
    assert pending.error == (
        "The task could not be sent: Error 111 connecting to 127.0.0.1:6379. Connection refused."
    )
    # the next change sends it again
    monkeypatch.undo()
    with django_capture_on_commit_callbacks(execute=True):
        assert services.refresh_request(entity_ids=[alpha.pk]) == 1
    assert not PendingRefresh.objects.exists()


def test_a_failed_re_evaluation_after_saving_a_scorecard_marks_its_entities(
    small_world, django_capture_on_commit_callbacks, monkeypatch
):
    def cancelled(*args, **kwargs):
        raise RuntimeError("canceling statement due to statement timeout")

    monkeypatch.setattr(services, "_results_in_database", cancelled)
    monkeypatch.setattr(services, "_results_in_python", cancelled)
    check = services.check_create(name="owner", rule={"path": "entity.spec.owner", "op": "exists"})
    with django_capture_on_commit_callbacks(execute=True):
        services.scorecard_create(name="Basics", filter="kind=component", checks=[{"check": check}])
    failed = PendingRefresh.objects.filter(failed_at__isnull=False)
    assert set(failed.values_list("entity_id", flat=True)) == {
        e.pk for e in small_world["entities"].values()
    }
    assert {row.error for row in failed} == {
        "RuntimeError: canceling statement due to statement timeout"
    }


def test_the_writes_of_two_recomputes_of_one_entity_take_turns(
    transactional_db, world, make_integration
):
    import threading

    from django.db import connection, transaction

    from integrations.models import ImportedEntity

    if connection.vendor != "postgresql":
        pytest.skip("SQLite takes one writer at a time anyway")
    world.add_repo("svc", prs=3, commits=2)
    integration = make_integration(auto_import=True, secondary_kinds=["pull_requests"])
    integration_sync(integration_id=integration.pk, trigger="manual")
    entity_id = ImportedEntity.objects.get().entity_id
    finished = threading.Event()

    def other_worker():
        try:
            services.metrics_refresh(entity_ids=[entity_id])
        finally:
            connection.close()
            finished.set()

    with transaction.atomic():
        services._writes_serialized()  # this worker is writing
        thread = threading.Thread(target=other_worker)
        thread.start()
        assert not finished.wait(1.0)  # the other waits for the lock, does not insert
    assert finished.wait(10)
    thread.join()
    assert EntityMetric.objects.filter(entity_id=entity_id, metric="open_prs").count() == 1
