"""Targeted refresh: one repository re-read from the API, for a webhook delivery.

A delivery is only a hint — signed payloads can still be stale or arrive out of order — so the
refresh reads the repository again through the provider and writes it with the scheduled sync's
own steps: upsert (:func:`discovered_upsert_page`), catalog-file enrichment, auto-import of a
repository not known yet, refresh of the linked entity's ingested properties, and the secondary
kinds of that one repository (always checked: pull-request activity does not touch the
repository itself). It records a ``SyncRun`` in mode ``repository``.

It takes the integration's claim like any run, so it never interleaves with a full sync.
When the claim is held, the delivery waits: the task re-enqueues itself with a short countdown
(a full sync that already listed the repository would otherwise miss the change until its next
run — pull-request activity even until the next sweep) for up to :data:`DEFER_WINDOW`; after that,
or when tasks run in process and cannot wait, the run is recorded as skipped and the scheduled
sync catches up.

A repository the provider no longer finds is marked gone only when the provider confirms it —
its probe still reaches the workspace or projects, so the 404 is not a lost permission.
"""

import logging
import random
from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from catalog.models import Entity
from integrations.choices import (
    DiscoveredState,
    IntegrationState,
    LinkState,
    SyncMode,
    SyncState,
    SyncTrigger,
    WebhookOutcome,
)
from integrations.engine.claims import claim_release, heartbeat, integration_claim
from integrations.engine.correlation import (
    CorrelationIndex,
    correlation_index_build,
    index_entities,
)
from integrations.engine.discovery import discovered_upsert_page, recommendations_refresh
from integrations.engine.enrichment import catalog_files_enrich
from integrations.engine.imports import discovered_import_new, imported_refresh
from integrations.engine.secondary import SecondarySync, start_datetime
from integrations.models import (
    DiscoveredEntity,
    ImportedEntity,
    Integration,
    SyncRun,
    WebhookDelivery,
)
from integrations.providers import registry
from integrations.providers.base import Provider, ProviderError

logger = logging.getLogger(__name__)

DEFER_WINDOW = timedelta(minutes=15)
DEFER_BEHIND_LISTING = 30.0  # seconds to wait behind a full or incremental sync
DEFER_BEHIND_REFRESH = 2.0  # ... behind another repository refresh (they take a second or so)


class _LazyIndex:
    """The correlation index, built on first use: a refresh of an imported repository never
    needs it, and building it reads every candidate entity."""

    def __init__(self, integration: Integration):
        self._integration = integration
        self._index: CorrelationIndex | None = None

    @property
    def built(self) -> bool:
        return self._index is not None

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        if self._index is None:
            self._index = correlation_index_build(integration=self._integration)
        return getattr(self._index, name)


def claim_holder(*, integration_id: int) -> SyncRun | None:
    """The run holding the integration's claim, if the claim is live."""
    holder = (
        Integration.objects.filter(pk=integration_id, locked_until__gte=timezone.now())
        .values_list("locked_by_run", flat=True)
        .first()
    )
    if holder is None:
        return None
    return SyncRun.objects.filter(pk=holder).first() or SyncRun(pk=holder, mode=SyncMode.FULL)


def _finish(run: SyncRun, state: str, *, message: str = "", error: str = "") -> SyncRun:
    """Record the run; unlike a scheduled sync's, the integration's schedule and listing
    marks stay as they are (one repository says nothing about the others)."""
    run.state = state
    run.message = (run.message or message)[:2000]
    run.error = error[:5000]
    run.finished_at = timezone.now()
    run.save()
    claim_release(run)
    return run


def _known(integration: Integration, external_id: str | None, name: str | None):
    rows = DiscoveredEntity.objects.filter(integration=integration)
    if external_id:
        return rows.filter(external_id=external_id).first()
    return rows.filter(name=name).first() if name else None


def _mark_gone(
    provider: Provider, run: SyncRun, row: DiscoveredEntity | None, label: str, *, confirm: bool
) -> None:
    if row is None:
        run.message = f"{label}: not found at the provider, and not known here"
        return
    if row.state == DiscoveredState.GONE:
        run.message = f"{label}: not found at the provider (already gone)"
        return
    if confirm:
        probe = provider.probe()
        if not probe.ok:
            raise ProviderError(
                f"{label} was not found, but the provider is not reachable as a whole either "
                f"({probe.message}): not marking it gone"
            )
    DiscoveredEntity.objects.filter(pk=row.pk).update(state=DiscoveredState.GONE)
    run.gone = 1
    run.message = (
        f"{label}: gone (the provider no longer has it)"
        if confirm
        else f"{label}: gone (no longer selected by the integration's target)"
    )


def repository_refresh(
    *,
    integration_id: int,
    external_id: str | None,
    name: str | None = None,
    trigger: str = SyncTrigger.WEBHOOK,
    provider: Provider | None = None,
) -> SyncRun:
    """Re-read one repository through the provider and write it as the scheduled sync would.

    Returns the run: ``succeeded``, ``failed`` (a provider error), or ``skipped`` (suspended,
    or another run holds the claim — then ``run.holder_id`` names that run).
    """
    integration = Integration.objects.select_related("connector").get(pk=integration_id)
    label = name or external_id or "?"
    run = SyncRun.objects.create(integration=integration, trigger=trigger, mode=SyncMode.REPOSITORY)
    run.holder_id = None
    log_extra = {"integration_id": integration.pk, "run_id": run.pk, "repository": label}
    if integration.state != IntegrationState.ENABLED:
        return _finish(run, SyncState.SKIPPED, message="Integration is suspended")
    if not integration_claim(integration_id=integration.pk, run=run):
        holder = claim_holder(integration_id=integration.pk)
        run.holder_id = holder.pk if holder else None
        run.state, run.finished_at = SyncState.SKIPPED, timezone.now()
        run.message = f"{label}: deferred, another sync (run {run.holder_id}) is running"
        run.save()
        return run
    logger.info("integrations.refresh.started", extra=log_extra)

    def tick() -> None:
        run.requests = provider.stats.requests
        run.pages = provider.stats.pages
        heartbeat(run)

    try:
        provider = provider or registry.for_integration(integration)
        record = provider.get_repository(external_id, name)
        if record is None:
            _mark_gone(provider, run, _known(integration, external_id, name), label, confirm=True)
        elif not provider.in_target(record):
            row = _known(integration, record.external_id, None)
            if row is None:
                run.message = f"{label}: not selected by the integration's target; ignored"
            else:
                _mark_gone(provider, run, row, label, confirm=False)
        else:
            _refresh(provider, integration, run, record, tick)
        tick()
    except ProviderError as exc:
        logger.warning("integrations.refresh.failed", extra={**log_extra, "error": exc.message})
        return _finish(run, SyncState.FAILED, error=exc.message)
    except Exception as exc:
        logger.exception("integrations.refresh.crashed", extra=log_extra)
        return _finish(run, SyncState.FAILED, error=f"{type(exc).__name__}: {exc}")
    logger.info("integrations.refresh.succeeded", extra=log_extra)
    return _finish(run, SyncState.SUCCEEDED)


def _refresh(provider: Provider, integration: Integration, run: SyncRun, record, tick) -> None:
    index = _LazyIndex(integration)
    catalog_files_enrich(provider, integration, [record], budget=1)
    with transaction.atomic():  # as a sync page: new record and its auto-import together
        heartbeat(run)  # a refresh that lost its claim (stalled past the TTL) writes nothing
        created, rows = discovered_upsert_page(
            integration=integration, records=[record], index=index, seen_at=timezone.now()
        )
        imported = (
            discovered_import_new(integration=integration, rows=created)
            if integration.auto_import
            else 0
        )
        row = rows[0]
        refreshed = imported_refresh(integration=integration, discovered_ids=[row.pk])
        if imported:
            # A new entity may be what other records were waiting to be merged into. (An
            # entity refreshed in place is left to the next scheduled run: rebuilding the
            # index for every push would cost more than the refresh itself.)
            linked = ImportedEntity.objects.filter(discovered=row, state=LinkState.LINKED)
            index.update(
                index_entities(
                    Entity.objects.filter(pk__in=linked.values("entity_id")), index.rules
                )
            )
    if index.built and index.changed:
        recommendations_refresh(integration=integration, index=index)
    run.discovered, run.imported, run.refreshed = len(created), imported, refreshed
    run.message = f"{record.name}: {'discovered' if created else 'updated'}"
    tick()
    if integration.secondary_kinds:
        secondary = SecondarySync(
            provider=provider,
            kinds=integration.secondary_kinds,
            start=start_datetime(integration),
            on_progress=tick,
            sweep={row.pk},
        )
        secondary.run(DiscoveredEntity.objects.filter(pk=row.pk))
        run.pull_requests = secondary.budget.written["pull_requests"]
        run.commits = secondary.budget.written["commits"]


# -- webhook deliveries ------------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryResult:
    outcome: str
    retry_in: float | None = None  # seconds, when the delivery should be tried again


def _delivery_close(delivery: WebhookDelivery, outcome: str, detail: str) -> None:
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        outcome=outcome, detail=detail[:5000], processed_at=timezone.now()
    )


def _retry_in(holder: SyncRun | None) -> float:
    base = DEFER_BEHIND_REFRESH if holder and holder.mode == SyncMode.REPOSITORY else None
    delay = base if base is not None else DEFER_BEHIND_LISTING
    return delay + random.uniform(0, delay)  # noqa: S311 - jitter, spreads a burst


def webhook_delivery_process(*, delivery_id: int, may_defer: bool = True) -> DeliveryResult:
    """Act on one recorded delivery: refresh its repository and store the outcome.

    While another run holds the integration, returns ``retry_in`` (when ``may_defer`` and the
    delivery is younger than :data:`DEFER_WINDOW`) and leaves the delivery queued. A successful
    refresh also closes the other queued deliveries of the same repository received before it
    started: the repository was read after they were sent.
    """
    delivery = WebhookDelivery.objects.select_related("integration").filter(pk=delivery_id).first()
    if delivery is None:
        return DeliveryResult("missing")
    if delivery.outcome != WebhookOutcome.QUEUED:
        return DeliveryResult(delivery.outcome)  # already done (a redelivered task)
    integration = delivery.integration
    if integration.state != IntegrationState.ENABLED:
        _delivery_close(delivery, WebhookOutcome.IGNORED, "Integration is suspended")
        return DeliveryResult(WebhookOutcome.IGNORED)
    may_defer = may_defer and timezone.now() - delivery.received_at < DEFER_WINDOW
    holder = claim_holder(integration_id=integration.pk)
    if holder is not None and may_defer:
        return DeliveryResult(WebhookOutcome.QUEUED, retry_in=_retry_in(holder))
    run = repository_refresh(
        integration_id=integration.pk,
        external_id=delivery.repository_external_id or None,
        name=delivery.repository_name or None,
    )
    if run.state == SyncState.SKIPPED and run.holder_id is not None and may_defer:
        holder = claim_holder(integration_id=integration.pk)  # taken since the check above
        return DeliveryResult(WebhookOutcome.QUEUED, retry_in=_retry_in(holder))
    if run.state == SyncState.SUCCEEDED:
        same_repository = (
            Q(repository_external_id=delivery.repository_external_id)
            if delivery.repository_external_id
            else Q(repository_name=delivery.repository_name)
        )
        WebhookDelivery.objects.filter(
            same_repository,
            integration=integration,
            outcome=WebhookOutcome.QUEUED,
            received_at__lte=run.started_at,
        ).exclude(pk=delivery.pk).update(
            outcome=WebhookOutcome.PROCESSED,
            detail=f"Covered by run {run.pk}",
            processed_at=timezone.now(),
        )
        _delivery_close(delivery, WebhookOutcome.PROCESSED, f"Run {run.pk}: {run.message}")
        return DeliveryResult(WebhookOutcome.PROCESSED)
    if run.state == SyncState.SKIPPED:
        detail = f"Run {run.pk} skipped: {run.message}"
        if run.holder_id is not None:
            detail += "; the next scheduled sync picks the change up"
        _delivery_close(delivery, WebhookOutcome.SKIPPED, detail)
        return DeliveryResult(WebhookOutcome.SKIPPED)
    _delivery_close(delivery, WebhookOutcome.FAILED, f"Run {run.pk} failed: {run.error}")
    return DeliveryResult(WebhookOutcome.FAILED)
