"""Celery tasks: thin wrappers that take ids and call one service."""

import logging

from celery import shared_task
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from integrations import services
from integrations.choices import DiscoveredState, IntegrationState, SyncTrigger
from integrations.models import Connector, DiscoveredEntity, Integration

logger = logging.getLogger(__name__)


@shared_task(name="integrations.sync_integration", acks_late=True)
def sync_integration(
    integration_id: int, trigger: str = SyncTrigger.SCHEDULE, full: bool | None = None
) -> int:
    """``full=True`` forces a full listing; ``None`` leaves it to the engine (full when due)."""
    run = services.integration_sync(integration_id=integration_id, trigger=trigger, full=full)
    return run.pk


@shared_task(name="integrations.enqueue_due_integrations")
def enqueue_due_integrations() -> int:
    """Every minute (beat): free the claims of dead workers' runs and forget past hours' request
    counts, then enqueue each enabled integration whose next sync is due."""
    services.expired_claims_release()
    services.request_budgets_prune()
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
def webhook_delivery_process(delivery_id: int) -> str:
    """Refresh the repository a webhook delivery names, or leave it coalesced for the run that
    holds the integration (which refreshes it before it ends)."""
    return services.webhook_delivery_process(delivery_id=delivery_id)


def webhook_delivery_enqueue(*, delivery_id: int) -> None:
    """Enqueue the processing of a recorded delivery once the current transaction commits (a
    failure to enqueue is logged, not raised: the delivery is recorded, the sync catches up)."""
    transaction.on_commit(lambda: webhook_delivery_process.delay(delivery_id), robust=True)


@shared_task(name="integrations.webhook_register")
def webhook_register(integration_id: int) -> str:
    integration = Integration.objects.select_related("connector").filter(pk=integration_id).first()
    if integration is None or not integration.is_enabled:
        return ""
    return services.integration_webhook_register(integration=integration)


@shared_task(name="integrations.webhook_unregister")
def webhook_unregister(connector_id: int, target: dict, url: str) -> int:
    connector = Connector.objects.filter(pk=connector_id).first()
    if connector is None:
        return 0
    return services.integration_webhook_unregister(connector=connector, target=target, url=url)


@shared_task(name="integrations.webhook_subscription_release")
def webhook_subscription_release(subscription_id: int, connector_id: int) -> int:
    connector = Connector.objects.filter(pk=connector_id).first()
    if connector is None:
        return 0
    return services.webhook_subscription_release(
        subscription_id=subscription_id, connector=connector
    )


# --- recommendations that follow the catalog --------------------------------------------------

# Beyond this many entities changed at once, one recompute of every record through a fresh
# index costs less than looking at each change.
RECOMMENDATIONS_FULL_OVER = 5000


@shared_task(name="integrations.recommendations_recompute")
def recommendations_recompute(
    integration_id: int, entity_ids: list[int] | None = None, deleted_refs: list[str] | None = None
) -> int:
    integration = Integration.objects.filter(pk=integration_id).first()
    if integration is None:
        return 0
    return services.integration_recommendations_refresh(
        integration=integration, entity_ids=entity_ids, deleted_refs=deleted_refs
    )


def recommendations_follow_catalog(changes) -> None:
    """The ``catalog.services.entity_changes_subscribe`` callback (after commit): one recompute
    per integration of a changed entity's kind with records not yet imported — however many
    entities the transaction wrote — except the integration whose own sync wrote them. Runs in
    process without a broker; a Celery task with one."""
    keys = (*changes.written.values(), *changes.deleted.values())
    kinds = {key.split(":", 1)[0] for key in keys}
    if not kinds:
        return
    of_kind = Q()
    for kind in kinds:
        of_kind |= Q(entity_kind__iexact=kind)
    waiting = DiscoveredEntity.objects.filter(
        integration=OuterRef("pk"), state=DiscoveredState.DISCOVERED
    )
    integration_ids = Integration.objects.filter(of_kind).filter(Exists(waiting))
    ids = sorted({*changes.written, *changes.deleted})
    entity_ids = None if len(ids) > RECOMMENDATIONS_FULL_OVER else ids
    for integration_id in integration_ids.values_list("pk", flat=True):
        if changes.source == services.integration_changes_source(integration_id=integration_id):
            continue
        recommendations_recompute.delay(
            integration_id, entity_ids, sorted(changes.deleted.values())
        )


# --- write-back ---------------------------------------------------------------------------------


@shared_task(name="integrations.writeback_run", acks_late=True)
def writeback_run(batch_id: int) -> int:
    """Write a batch's repositories back; a redelivery skips those already finished, and a
    batch paused by a spent request budget is run again once it may go on."""
    batch = services.writeback_run(batch_id=batch_id)
    resume_after = getattr(batch, "resume_after", None)
    if resume_after and not writeback_run.app.conf.task_always_eager:
        writeback_run.apply_async((batch_id,), countdown=resume_after)
    return batch.pk


def writeback_enqueue(*, batch_id: int) -> None:
    """Run the batch once the current transaction commits (its records exist by then)."""
    transaction.on_commit(lambda: writeback_run.delay(batch_id))
