"""Celery tasks: recomputes that follow syncs, webhook refreshes and catalog writes, off the
writer's path. Thin: they take ids and call one service. Without a broker they run in process
(``task_always_eager``), like every Lantern task."""

import logging

from celery import shared_task
from django.db import transaction
from kombu.exceptions import OperationalError

from scorecards import services

logger = logging.getLogger(__name__)


@shared_task(name="scorecards.entities_refresh", acks_late=True)
def entities_refresh(entity_ids: list[int]) -> int:
    return services.pending_refresh_run(entity_ids=entity_ids)


def entities_refresh_enqueue(*, entity_ids: list[int]) -> None:
    """Send the recompute once the current transaction commits. If the broker cannot take it,
    the entities are marked failed with the reason (the admin shows them and sends them again);
    the writer's commit stands."""
    transaction.on_commit(lambda: _entities_refresh_send(entity_ids), robust=True)


def _entities_refresh_send(entity_ids: list[int]) -> None:
    try:
        entities_refresh.delay(entity_ids)
    except OperationalError as exc:
        logger.exception("scorecards.refresh.not_sent", extra={"entities": len(entity_ids)})
        services.pending_refresh_failed(
            entity_ids=entity_ids, error=f"The task could not be sent: {exc}"
        )


@shared_task(name="scorecards.results_refresh", acks_late=True)
def results_refresh(scorecard_ids: list[int]) -> int:
    return services.scorecard_results_recompute(scorecard_ids=scorecard_ids)


def results_refresh_enqueue(*, scorecard_ids: list[int]) -> None:
    """Re-evaluate scorecards whose checks, filter or levels changed, after the commit."""
    transaction.on_commit(lambda: results_refresh.delay(scorecard_ids), robust=True)
