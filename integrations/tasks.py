"""Celery tasks: thin wrappers that take ids and call one service."""

import logging

from celery import shared_task
from django.db import transaction
from django.utils import timezone

from integrations.choices import IntegrationState, SyncTrigger
from integrations.engine.sync import integration_sync
from integrations.models import Integration

logger = logging.getLogger(__name__)


@shared_task(name="integrations.sync_integration", acks_late=True)
def sync_integration(integration_id: int, trigger: str = SyncTrigger.SCHEDULE) -> int:
    run = integration_sync(integration_id=integration_id, trigger=trigger)
    return run.pk


@shared_task(name="integrations.enqueue_due_integrations")
def enqueue_due_integrations() -> int:
    """Every minute (beat): enqueue each enabled integration whose next sync is due."""
    due = list(
        Integration.objects.filter(
            state=IntegrationState.ENABLED, next_sync_at__lte=timezone.now()
        ).values_list("pk", flat=True)
    )
    for integration_id in due:
        sync_enqueue(integration_id=integration_id, trigger=SyncTrigger.SCHEDULE)
    return len(due)


def sync_enqueue(*, integration_id: int, trigger: str) -> None:
    """Enqueue a sync once the current transaction commits."""
    transaction.on_commit(lambda: sync_integration.delay(integration_id, trigger))
