"""Targeted refresh: one repository re-read from the API, for a webhook delivery.

A delivery is only a hint — signed payloads can still be stale or arrive out of order — so the
refresh reads the repository again through the provider and writes it with the scheduled sync's
own steps: upsert (:func:`discovered_upsert_page`), catalog-file enrichment, auto-import of a
repository not known yet, refresh of the linked entity's ingested properties, and the secondary
kinds of that one repository (always checked: pull-request activity does not touch the
repository itself). It records a ``SyncRun`` in mode ``repository``.

It takes the integration's claim like any run, so it never interleaves with a full sync.
Deliveries that find the claim held are never dropped: they **coalesce**.

1. A delivery is first marked ``coalesced``, and only then tries the claim. If it gets it, its
   run refreshes every repository named by a coalesced delivery of the integration (its own
   included): :func:`webhook_coalesced_followup`.
2. Whoever holds the claim — a full or incremental sync, a repository refresh, a follow-up —
   drains the coalesced deliveries before it releases the claim
   (:func:`webhook_coalesced_drain`): one refresh per repository however many deliveries name
   it, each delivery closed as processed ("Covered by run N") or failed with the reason.
3. After releasing, it looks again and, if a delivery was marked meanwhile, takes the claim
   again for a follow-up run that drains it.

There is no lost wake-up: a delivery marks before it tries the claim, and a holder releases
before it looks again, so either the holder's second look sees the mark or the delivery's own
claim attempt succeeds. Nothing waits on a timer, so in-process tasks and Celery workers behave
alike.

A repository the provider no longer finds is marked gone only when the provider confirms it —
its probe still reaches the workspace or projects, so the 404 is not a lost permission.
"""

import logging
from collections.abc import Callable

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
from integrations.engine.claims import SyncAborted, claim_release, heartbeat, integration_claim
from integrations.engine.correlation import (
    CorrelationIndex,
    correlation_index_build,
    index_entities,
)
from integrations.engine.discovery import (
    discovered_gone,
    discovered_upsert_page,
    recommendations_refresh,
)
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

# Bounds, so a stream of deliveries cannot keep one run (or one worker) busy for ever: what is
# left after them stays coalesced for the next run holding the claim (a later delivery's, or
# the next scheduled sync's).
DRAIN_ROUNDS = 20  # looks at the coalesced deliveries per run
FOLLOWUP_RUNS = 10  # follow-up runs one releaser starts in a row
DRAIN_PAGE = 50  # repositories read, then written together as one page

WAITING = "Waiting for the run holding the integration, which refreshes it before it ends"
PENDING = (WebhookOutcome.QUEUED, WebhookOutcome.COALESCED)

Tick = Callable[[], None]


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
) -> str:
    if row is None:
        return f"{label}: not found at the provider, and not known here"
    if row.state == DiscoveredState.GONE:
        return f"{label}: not found at the provider (already gone)"
    if confirm:
        probe = provider.probe()
        if not probe.ok:
            raise ProviderError(
                f"{label} was not found, but the provider is not reachable as a whole either "
                f"({probe.message}): not marking it gone"
            )
    run.gone += discovered_gone(discovered_ids=[row.pk], at=timezone.now())
    if confirm:
        return f"{label}: gone (the provider no longer has it)"
    return f"{label}: gone (no longer selected by the integration's target)"


def _repository_write(
    provider: Provider,
    integration: Integration,
    run: SyncRun,
    *,
    external_id: str | None,
    name: str | None,
    tick: Tick,
) -> str:
    """Read one repository and write what the provider says of it (new, changed, out of the
    target, or gone); the run's counts grow by what was written. Returns what happened."""
    label = name or external_id or "?"
    record = provider.get_repository(external_id, name)
    if record is None:
        return _mark_gone(
            provider, run, _known(integration, external_id, name), label, confirm=True
        )
    if not provider.in_target(record):
        row = _known(integration, record.external_id, None)
        if row is None:
            return f"{label}: not selected by the integration's target; ignored"
        return _mark_gone(provider, run, row, label, confirm=False)
    return _refresh(provider, integration, run, record, tick)


def _provider_tick(run: SyncRun, provider: Provider, *, own: bool = False) -> Tick:
    """Renew the claim and count the provider's requests on the run; ``own``: a provider made
    for this step, whose requests add to those the run made before it."""
    requests, pages = (run.requests or 0, run.pages or 0) if own else (0, 0)

    def tick() -> None:
        run.requests = requests + provider.stats.requests
        run.pages = pages + provider.stats.pages
        heartbeat(run)

    return tick


def repository_refresh(
    *,
    integration_id: int,
    external_id: str | None,
    name: str | None = None,
    trigger: str = SyncTrigger.WEBHOOK,
    provider: Provider | None = None,
) -> SyncRun:
    """Re-read one repository through the provider and write it as the scheduled sync would;
    before releasing the claim, also refresh the repositories of coalesced webhook deliveries,
    and after it, follow up on the ones marked meanwhile.

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
        run.message = f"{label}: not refreshed, another sync (run {run.holder_id}) is running"
        run.save()
        return run
    logger.info("integrations.refresh.started", extra=log_extra)
    state, error, claimed = SyncState.SUCCEEDED, "", True
    try:
        provider = provider or registry.for_integration(integration)
        tick = _provider_tick(run, provider)
        run.message = _repository_write(
            provider, integration, run, external_id=external_id, name=name, tick=tick
        )
        tick()
    except SyncAborted as exc:
        logger.warning("integrations.refresh.aborted", extra={**log_extra, "error": str(exc)})
        state, error, claimed = SyncState.FAILED, str(exc), False
    except ProviderError as exc:
        logger.warning("integrations.refresh.failed", extra={**log_extra, "error": exc.message})
        state, error = SyncState.FAILED, exc.message
    except Exception as exc:
        logger.exception("integrations.refresh.crashed", extra=log_extra)
        state, error = SyncState.FAILED, f"{type(exc).__name__}: {exc}"
    if claimed:
        drained = webhook_coalesced_drain(run=run, provider=provider, tick=None)
        if drained:
            run.message = f"{run.message}; {_drained_message(drained)}"
    if state == SyncState.SUCCEEDED:
        logger.info("integrations.refresh.succeeded", extra=log_extra)
    _finish(run, state, error=error)
    webhook_coalesced_followup(integration_id=integration.pk)
    return run


def _refresh(provider: Provider, integration: Integration, run: SyncRun, record, tick) -> str:
    return _refresh_page(provider, integration, run, [record], tick)[0]


def _refresh_page(
    provider: Provider, integration: Integration, run: SyncRun, records: list, tick: Tick
) -> list[str]:
    """Write repositories read just now as one sync page (a drain writes its whole batch so):
    catalog files, upsert, auto-import of the new ones, refresh of the linked entities, then
    their secondary kinds. Returns what happened to each, in order."""
    index = _LazyIndex(integration)
    records = catalog_files_enrich(provider, integration, records, budget=len(records)).records
    with transaction.atomic():  # as a sync page: new records and their auto-import together
        heartbeat(run)  # a refresh that lost its claim (stalled past the TTL) writes nothing
        created, rows = discovered_upsert_page(
            integration=integration, records=records, index=index, seen_at=timezone.now()
        )
        imported = (
            discovered_import_new(integration=integration, rows=created)
            if integration.auto_import and created
            else 0
        )
        page_ids = [row.pk for row in rows]
        refreshed = imported_refresh(integration=integration, discovered_ids=page_ids)
        if imported:
            # A new entity may be what other records were waiting to be merged into. (An
            # entity refreshed in place is left to the next scheduled run: rebuilding the
            # index for every push would cost more than the refresh itself.)
            linked = ImportedEntity.objects.filter(discovered__in=page_ids, state=LinkState.LINKED)
            index.update(
                index_entities(
                    Entity.objects.filter(pk__in=linked.values("entity_id")), index.rules
                )
            )
    if index.built and index.changed:
        recommendations_refresh(integration=integration, index=index)
    run.discovered += len(created)
    run.imported += imported
    run.refreshed += refreshed
    tick()
    if integration.secondary_kinds:
        secondary = SecondarySync(
            provider=provider,
            kinds=integration.secondary_kinds,
            start=start_datetime(integration),
            on_progress=tick,
            sweep=set(page_ids),
        )
        secondary.run(DiscoveredEntity.objects.filter(pk__in=page_ids))
        run.pull_requests += secondary.budget.written["pull_requests"]
        run.commits += secondary.budget.written["commits"]
    new = {row.external_id for row in created}
    return [
        f"{record.name}: {'discovered' if record.external_id in new else 'updated'}"
        for record in records
    ]


# -- webhook deliveries ------------------------------------------------------------------------


def _drained_message(repositories: int) -> str:
    plural = "repository" if repositories == 1 else "repositories"
    return f"refreshed {repositories} {plural} named by coalesced webhook deliveries"


def _same_repository(external_id: str, name: str) -> Q:
    return Q(repository_external_id=external_id) if external_id else Q(repository_name=name)


def _coalesced(integration_id: int):
    return WebhookDelivery.objects.filter(
        integration_id=integration_id, outcome=WebhookOutcome.COALESCED
    )


def _coalesced_repositories(integration_id: int) -> list[tuple[str, str]]:
    """The distinct repositories the coalesced deliveries name, in the order the first delivery
    naming each was received (read through the partial index ``webhook_delivery_coalesced``)."""
    seen: dict[tuple[str, str], tuple[str, str]] = {}
    rows = (
        _coalesced(integration_id)
        .order_by("received_at", "pk")
        .values_list("repository_external_id", "repository_name")
    )
    for external_id, name in rows:
        seen.setdefault((external_id, "" if external_id else name), (external_id, name))
    return list(seen.values())


def webhook_coalesced_drain(
    *, run: SyncRun, provider: Provider | None = None, tick: Tick | None = None
) -> int:
    """Refresh every repository named by the integration's coalesced deliveries; called by the
    run holding the claim, before it releases it. Returns how many repositories were refreshed.

    One refresh per repository however many deliveries name it, in the order they were
    received, with the steps of :func:`repository_refresh` (gone included). Each refresh closes
    the deliveries of its repository received before it read it — coalesced, or still queued
    for a worker — as processed ("Covered by run N"), or as failed with the reason; one
    repository's failure does not stop the others. Deliveries marked while it works are picked
    up by the next look, for :data:`DRAIN_ROUNDS` looks. It never raises: a run that lost its
    claim stops and leaves the rest coalesced, for the run that took the claim over.
    """
    log_extra = {"integration_id": run.integration_id, "run_id": run.pk}
    refreshed = 0
    run.drain_failures = failures = []  # the repositories that failed, for the caller's record
    try:
        repositories = _coalesced_repositories(run.integration_id)
        if not repositories:
            return 0
        heartbeat(run)  # a run that lost its claim refreshes nothing
        integration = Integration.objects.select_related("connector").get(pk=run.integration_id)
        own = provider is None
        try:
            provider = provider or registry.for_integration(integration)
        except ProviderError as exc:
            _coalesced_fail(run, exc.message)
            failures.append(exc.message)
            return 0
        tick = tick or _provider_tick(run, provider, own=own)
        for _ in range(DRAIN_ROUNDS):
            for start in range(0, len(repositories), DRAIN_PAGE):
                batch = repositories[start : start + DRAIN_PAGE]
                failures += _coalesced_refresh(provider, integration, run, batch, tick)
                refreshed += len(batch)
            repositories = _coalesced_repositories(run.integration_id)
            if not repositories:
                break
    except SyncAborted as exc:
        logger.warning("integrations.webhook.drain_stopped", extra={**log_extra, "error": str(exc)})
    except Exception:
        logger.exception("integrations.webhook.drain_crashed", extra=log_extra)
    if refreshed:
        logger.info("integrations.webhook.drained", extra={**log_extra, "repositories": refreshed})
    return refreshed


def _coalesced_refresh(
    provider: Provider,
    integration: Integration,
    run: SyncRun,
    batch: list[tuple[str, str]],
    tick: Tick,
) -> list[str]:
    """Refresh a batch of repositories and close their deliveries; returns the ones that
    failed. Each is read on its own; those still there are written together as one page (and,
    should that page fail, one by one, so only the repository at fault fails)."""
    read_at = timezone.now()
    results: dict[tuple[str, str], tuple[str, str]] = {}
    pending: dict[str, list[tuple[str, str]]] = {}  # external id -> the keys naming it
    records = []
    for key in batch:
        external_id, name = key
        try:
            record = provider.get_repository(external_id or None, name or None)
            if record is None:
                row = _known(integration, external_id or None, name or None)
                message = _mark_gone(provider, run, row, name or external_id, confirm=True)
            elif not provider.in_target(record):
                row = _known(integration, record.external_id, None)
                message = (
                    _mark_gone(provider, run, row, name or external_id, confirm=False)
                    if row
                    else f"{name or external_id}: not selected by the integration's target"
                )
            else:
                if record.external_id not in pending:
                    records.append(record)
                pending.setdefault(record.external_id, []).append(key)
                continue
            results[key] = (WebhookOutcome.PROCESSED, message)
        except SyncAborted:
            raise
        except Exception as exc:
            results[key] = _failure(run, name or external_id, exc)
    if records:
        try:
            messages = _refresh_page(provider, integration, run, records, tick)
        except SyncAborted:
            raise
        except Exception:
            messages = []
            for record in records:
                try:
                    messages.append(_refresh(provider, integration, run, record, tick))
                except SyncAborted:
                    raise
                except Exception as exc:
                    messages.append(_failure(run, record.name, exc))
        for record, message in zip(records, messages, strict=True):
            for key in pending[record.external_id]:
                results[key] = (
                    message if isinstance(message, tuple) else (WebhookOutcome.PROCESSED, message)
                )
    tick()
    failed = []
    for (external_id, name), (outcome, message) in results.items():
        if outcome == WebhookOutcome.PROCESSED:
            detail = f"Covered by run {run.pk}: {message}"
        else:
            detail = f"Run {run.pk} failed: {message}"
            failed.append(name or external_id)
        WebhookDelivery.objects.filter(
            _same_repository(external_id, name),
            integration_id=integration.pk,
            outcome__in=PENDING,
            received_at__lte=read_at,
        ).update(outcome=outcome, detail=detail[:5000], processed_at=timezone.now())
    return failed


def _failure(run: SyncRun, label: str, exc: Exception) -> tuple[str, str]:
    extra = {"run_id": run.pk, "repository": label}
    if isinstance(exc, ProviderError):
        logger.warning("integrations.webhook.refresh_failed", extra={**extra, "error": exc.message})
        return WebhookOutcome.FAILED, exc.message
    logger.exception("integrations.webhook.refresh_crashed", extra=extra)
    return WebhookOutcome.FAILED, f"{type(exc).__name__}: {exc}"


def _coalesced_fail(run: SyncRun, reason: str) -> None:
    _coalesced(run.integration_id).update(
        outcome=WebhookOutcome.FAILED,
        detail=f"Run {run.pk} failed: {reason}"[:5000],
        processed_at=timezone.now(),
    )


def webhook_coalesced_followup(*, integration_id: int) -> SyncRun | None:
    """After a run released the claim: if deliveries were marked coalesced meanwhile, take the
    claim again (a new run, mode ``repository``, trigger ``webhook``) and drain them; repeated
    while more keep coming, up to :data:`FOLLOWUP_RUNS` runs. Returns the last run, or ``None``
    when there was nothing to do or another run holds the claim (that run drains them)."""
    last = None
    for _ in range(FOLLOWUP_RUNS):
        if not _coalesced(integration_id).exists():
            break
        integration = Integration.objects.filter(pk=integration_id).first()
        if integration is None:
            break
        if integration.state != IntegrationState.ENABLED:
            _coalesced(integration_id).update(
                outcome=WebhookOutcome.IGNORED,
                detail="Integration is suspended",
                processed_at=timezone.now(),
            )
            break
        if claim_holder(integration_id=integration_id) is not None:
            break  # the holder drains them before it releases (or follows up after)
        run = SyncRun.objects.create(
            integration=integration, trigger=SyncTrigger.WEBHOOK, mode=SyncMode.REPOSITORY
        )
        if not integration_claim(integration_id=integration_id, run=run):
            # Taken since the look above: its holder drains them. This run never ran.
            SyncRun.objects.filter(pk=run.pk).delete()
            break
        drained = webhook_coalesced_drain(run=run, provider=None, tick=None)
        failed = run.drain_failures
        run.message = _drained_message(drained).capitalize()
        _finish(
            run,
            SyncState.FAILED if failed and len(failed) >= drained else SyncState.SUCCEEDED,
            error=f"{len(failed)} of {drained} failed: {', '.join(failed)}" if failed else "",
        )
        last = run
    return last


def _delivery_close(delivery: WebhookDelivery, outcome: str, detail: str) -> None:
    WebhookDelivery.objects.filter(pk=delivery.pk, outcome__in=PENDING).update(
        outcome=outcome, detail=detail[:5000], processed_at=timezone.now()
    )


def webhook_delivery_process(*, delivery_id: int) -> str:
    """Act on one recorded delivery: mark it coalesced, then try the claim and, with it,
    refresh every coalesced repository of the integration; without it, the run holding the
    claim refreshes it before it ends. Returns the delivery's outcome afterwards.

    A delivery already coalesced (a task handed out again after a worker died) is treated as a
    new one: marking it again is harmless, and its claim attempt may be what drains it.
    """
    delivery = WebhookDelivery.objects.select_related("integration").filter(pk=delivery_id).first()
    if delivery is None:
        return "missing"
    if delivery.outcome not in PENDING:
        return delivery.outcome  # already done (a redelivered task, or covered by a refresh)
    integration = delivery.integration
    if integration.state != IntegrationState.ENABLED:
        _delivery_close(delivery, WebhookOutcome.IGNORED, "Integration is suspended")
        return WebhookOutcome.IGNORED
    # Mark first, claim second: see the module docstring.
    WebhookDelivery.objects.filter(pk=delivery.pk, outcome=WebhookOutcome.QUEUED).update(
        outcome=WebhookOutcome.COALESCED, detail=WAITING
    )
    run = webhook_coalesced_followup(integration_id=integration.pk)
    if run is None:
        holder = claim_holder(integration_id=integration.pk)
        if holder is not None:
            WebhookDelivery.objects.filter(pk=delivery.pk, outcome=WebhookOutcome.COALESCED).update(
                detail=f"Waiting for run {holder.pk}, which refreshes it before it ends"
            )
    outcome = WebhookDelivery.objects.filter(pk=delivery.pk).values_list("outcome", flat=True)
    return outcome.first() or "missing"
