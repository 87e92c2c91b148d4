"""Celery tasks: recomputes that follow syncs, webhook refreshes and catalog writes, off the
writer's path. Thin: they take ids and call one service. Without a broker they run in process
(``task_always_eager``), like every Lantern task."""

from celery import shared_task
from django.db import transaction

from scorecards import services


@shared_task(name="scorecards.entities_refresh", acks_late=True)
def entities_refresh(entity_ids: list[int]) -> int:
    return services.pending_refresh_run(entity_ids=entity_ids)


def entities_refresh_enqueue(*, entity_ids: list[int]) -> None:
    """Send the recompute once the current transaction commits (a failure to send is logged;
    the entities stay pending and the next change, or the admin's action, sends them again)."""
    transaction.on_commit(lambda: entities_refresh.delay(entity_ids), robust=True)


@shared_task(name="scorecards.results_refresh", acks_late=True)
def results_refresh(scorecard_ids: list[int]) -> int:
    return services.scorecard_results_refresh(scorecard_ids=scorecard_ids)


def results_refresh_enqueue(*, scorecard_ids: list[int]) -> None:
    """Re-evaluate scorecards whose checks, filter or levels changed, after the commit."""
    transaction.on_commit(lambda: results_refresh.delay(scorecard_ids), robust=True)
