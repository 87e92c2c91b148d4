"""Celery tasks: thin wrappers that take ids and call one service."""

import logging

from celery import shared_task
from django.db import transaction
from django.utils import timezone

from integrations.choices import IntegrationState, SyncTrigger
from integrations.engine import targeted
from integrations.engine.sync import expired_claims_release, integration_sync
from integrations.models import Integration

logger = logging.getLogger(__name__)


@shared_task(name="integrations.sync_integration", acks_late=True)
def sync_integration(
    integration_id: int, trigger: str = SyncTrigger.SCHEDULE, full: bool | None = None
) -> int:
    """``full=True`` forces a full listing; ``None`` leaves it to the engine (full when due)."""
    run = integration_sync(integration_id=integration_id, trigger=trigger, full=full)
    return run.pk


@shared_task(name="integrations.enqueue_due_integrations")
def enqueue_due_integrations() -> int:
    """Every minute (beat): free the claims of dead workers' runs, then enqueue each enabled
    integration whose next sync is due."""
    expired_claims_release()
    due = list(
        Integration.objects.filter(
            state=IntegrationState.ENABLED, next_sync_at__lte=timezone.now()
        ).values_list("pk", flat=True)
    )
    for integration_id in due:
        sync_enqueue(integration_id=integration_id, trigger=SyncTrigger.SCHEDULE)
    return len(due)


def sync_enqueue(*, integration_id: int, trigger: str, full: bool | None = None) -> None:
    """Enqueue a sync once the current transaction commits."""
    transaction.on_commit(lambda: sync_integration.delay(integration_id, trigger, full))


@shared_task(name="integrations.webhook_delivery_process", acks_late=True)
def webhook_delivery_process(delivery_id: int, deferrals: int = 0) -> str:
    """Refresh the repository a webhook delivery names, or leave it coalesced for the run that
    holds the integration (which refreshes it before it ends). ``deferrals`` is ignored: it is
    accepted for messages enqueued by a version that re-enqueued deliveries with a countdown."""
    return targeted.webhook_delivery_process(delivery_id=delivery_id)


def webhook_delivery_enqueue(*, delivery_id: int) -> None:
    """Enqueue the processing of a recorded delivery once the current transaction commits (a
    failure to enqueue is logged, not raised: the delivery is recorded, the sync catches up)."""
    transaction.on_commit(lambda: webhook_delivery_process.delay(delivery_id), robust=True)


@shared_task(name="integrations.webhook_register")
def webhook_register(integration_id: int) -> str:
    from integrations import services

    integration = Integration.objects.select_related("connector").filter(pk=integration_id).first()
    if integration is None or not integration.is_enabled:
        return ""
    return services.integration_webhook_register(integration=integration)


@shared_task(name="integrations.webhook_unregister")
def webhook_unregister(connector_id: int, target: dict, url: str) -> int:
    from integrations import services
    from integrations.models import Connector

    connector = Connector.objects.filter(pk=connector_id).first()
    if connector is None:
        return 0
    return services.integration_webhook_unregister(connector=connector, target=target, url=url)
