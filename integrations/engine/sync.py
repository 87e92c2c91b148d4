"""The sync engine, one for every provider (DESIGN.md steps 1–6).

1. claim the integration (a conditional UPDATE: one run at a time across all workers; a crashed
   run's claim expires);
2. stream repositories page by page, upserting DiscoveredEntity in bulk; after a *complete*
   listing, mark the ones not seen ``gone`` unless too many would vanish at once;
3. recommend through a correlation index built once per run;
4. auto-import new records if enabled; refresh linked imported entities;
5. secondary kinds within the per-run caps;
6. record the run. Every step is an idempotent upsert, so a crash and a re-run converge on the
   catalog a clean run gives.
"""

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from catalog.models import Entity, EntitySearch, Relation
from catalog.services import entity_changes_source
from integrations.choices import (
    DiscoveredState,
    IntegrationState,
    LinkState,
    ProcessingStage,
    SyncMode,
    SyncState,
)
from integrations.engine.claims import (
    ClaimLost,
    SyncAborted,
    claim_release,
    expired_claims_release,
    heartbeat,
    integration_claim,
    lock_ttl,
)
from integrations.engine.correlation import (
    CorrelationIndex,
    correlation_index_build,
    index_entities,
)
from integrations.engine.discovery import (
    discovered_mark_gone,
    discovered_upsert_page,
    entity_changes_source_of,
    recommendations_refresh,
)
from integrations.engine.enrichment import CatalogFileReads, catalog_files_enrich
from integrations.engine.health import connector_failed, connector_health_record
from integrations.engine.imports import (
    discovered_errors_retry,
    discovered_import_new,
    imported_refresh,
)
from integrations.engine.orphans import orphans_clear
from integrations.engine.processing import RunErrors
from integrations.engine.readahead import ListingPages
from integrations.engine.secondary import SecondarySync, start_datetime
from integrations.engine.targeted import webhook_coalesced_drain, webhook_coalesced_followup
from integrations.models import (
    Commit,
    DiscoveredEntity,
    ImportedEntity,
    Integration,
    PullRequest,
    SyncRun,
)
from integrations.providers import registry
from integrations.providers.base import Provider, ProviderError, RepoRecord
from portal.bulk import tables_analyze

__all__ = [
    "ClaimLost",
    "SyncAborted",
    "expired_claims_release",
    "integration_claim",
    "integration_sync",
]

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 2.0  # how often, at most, a running sync extends its claim (and TTL / 4)
LISTING_OVERLAP = timedelta(minutes=10)
SWEEP_PER_RUN = 100
CATALOG_FILE_READS_PER_RUN = 1000
ProgressCallback = Callable[[SyncRun], None]


def _sync_mode(integration: Integration, full: bool | None) -> tuple[str, datetime | None]:
    """A full listing when asked, never done, or due; otherwise only what changed since the last
    listing (with an overlap for clock skew and slow writes)."""
    now = timezone.now()
    due = integration.last_full_sync_at is None or (
        now - integration.last_full_sync_at >= timedelta(minutes=integration.full_sync_interval)
    )
    if full or (full is None and due) or integration.last_listing_at is None:
        return SyncMode.FULL, None
    return SyncMode.INCREMENTAL, integration.last_listing_at - LISTING_OVERLAP


def _sweep_candidates(integration: Integration, now: datetime) -> set[int]:
    """Repositories whose PRs and commits are due a check even though the repository itself did
    not change (PR-only activity does not touch it): the least recently swept, a few per run."""
    interval = timedelta(minutes=integration.full_sync_interval)
    due: list[tuple[str, int]] = []
    rows = integration.discovered.exclude(state=DiscoveredState.GONE).values_list(
        "pk", "secondary_state"
    )
    for pk, state in rows.iterator(chunk_size=2000):
        swept = min(
            ((state or {}).get(kind) or {}).get("swept_at") or ""
            for kind in integration.secondary_kinds
        )
        if not swept or parse_datetime(swept) <= now - interval:
            due.append((swept, pk))
    due.sort()
    return {pk for _, pk in due[:SWEEP_PER_RUN]}


def integration_sync(
    *,
    integration_id: int,
    trigger: str,
    provider: Provider | None = None,
    on_progress: ProgressCallback | None = None,
    full: bool | None = None,
) -> SyncRun:
    """Run one sync of an integration and return its SyncRun (skipped if another is running).

    ``full``: force a full listing (True) or an incremental one (False); by default a full
    listing runs every ``full_sync_interval`` and incremental ones in between. The run's
    catalog writes are labelled as its own: it recomputes its advice itself.
    """
    with entity_changes_source(entity_changes_source_of(integration_id)):
        return _integration_sync(
            integration_id=integration_id,
            trigger=trigger,
            provider=provider,
            on_progress=on_progress,
            full=full,
        )


def _integration_sync(
    *,
    integration_id: int,
    trigger: str,
    provider: Provider | None,
    on_progress: ProgressCallback | None,
    full: bool | None,
) -> SyncRun:
    # Whether earlier runs left records to try again, read with the integration itself.
    failed_before = DiscoveredEntity.objects.filter(
        integration=OuterRef("pk"), error_since__isnull=False
    )
    integration = (
        Integration.objects.select_related("connector")
        .annotate(failed_before=Exists(failed_before))
        .get(pk=integration_id)
    )
    mode, since = _sync_mode(integration, full)
    run = SyncRun.objects.create(integration=integration, trigger=trigger, mode=mode)
    log_extra = {"integration_id": integration.pk, "run_id": run.pk, "trigger": trigger}
    if integration.state != IntegrationState.ENABLED:
        return _finish(run, SyncState.SKIPPED, message="Integration is suspended")
    if not integration_claim(integration_id=integration.pk, run=run):
        holder = Integration.objects.filter(pk=integration.pk).values_list(
            "locked_by_run", flat=True
        )
        return _finish(
            run, SyncState.SKIPPED, message=f"Another sync (run {holder.first()}) is running"
        )
    logger.info("integrations.sync.started", extra=log_extra)
    try:
        provider = provider or registry.for_integration(integration)
        tick = _Progress(run, provider, on_progress)
        seen_at = timezone.now()
        errors = RunErrors(run)
        index = correlation_index_build(integration=integration)
        listed = _listing_sync(integration, run, provider, since, index, seen_at, errors, tick)
        # What failed before for records this listing did not bring (an incremental one lists
        # only what changed) is tried again with the mappings and catalog as they are now.
        if integration.failed_before:
            with transaction.atomic():
                heartbeat(run)
                if discovered_errors_retry(integration=integration, errors=errors, exclude=listed):
                    index = correlation_index_build(integration=integration)
                errors.flush()
        # Every run recomputes the advice of every record not imported, listed or not.
        recommendations_refresh(integration=integration, index=index)
        if mode == SyncMode.FULL:  # only a complete listing can tell what vanished
            discovered_mark_gone(integration, run, seen_at)
        Integration.objects.filter(pk=integration.pk).update(
            last_listing_at=seen_at,
            **({"last_full_sync_at": seen_at} if mode == SyncMode.FULL else {}),
        )
        if integration.secondary_kinds:
            _secondary_sync(integration, run, provider, seen_at, errors, tick)
        errors.flush()
        tick()
    except ProviderError as exc:
        logger.warning("integrations.sync.failed", extra={**log_extra, "error": exc.message})
        if connector_failed(exc):
            connector_health_record(connector=integration.connector, ok=False, message=exc.message)
        return _finish(
            run, SyncState.FAILED, error=exc.message, integration=integration, provider=provider
        )
    except Exception as exc:
        logger.exception("integrations.sync.crashed", extra=log_extra)
        return _finish(
            run,
            SyncState.FAILED,
            error=f"{type(exc).__name__}: {exc}",
            integration=integration,
            provider=provider,
        )
    # The listing went through: the credential works (what failed was per repository).
    connector_health_record(connector=integration.connector, ok=True)
    if run.errors:
        logger.warning("integrations.sync.partial", extra={**log_extra, "errors": run.errors})
        return _finish(run, SyncState.PARTIAL, integration=integration, provider=provider)
    logger.info("integrations.sync.succeeded", extra=log_extra)
    return _finish(run, SyncState.SUCCEEDED, integration=integration, provider=provider)


class _Progress:
    """Called after each step of a run: copies the provider's counters onto the run, extends
    the claim (at most every ``HEARTBEAT_SECONDS``, and a quarter of the TTL: not one UPDATE per
    request) and reports the run to ``on_progress``."""

    def __init__(self, run: SyncRun, provider: Provider, on_progress: ProgressCallback | None):
        self.run = run
        self.provider = provider
        self.report = on_progress or (lambda run: None)
        self.every = min(HEARTBEAT_SECONDS, lock_ttl().total_seconds() / 4)
        self.beat_at = time.monotonic()

    def claim_renewed(self) -> None:
        """A step renewed the claim itself (a page write starts with a heartbeat)."""
        self.beat_at = time.monotonic()

    def __call__(self) -> None:
        stats = self.provider.stats
        self.run.requests, self.run.pages, self.run.unchanged = (
            stats.requests,
            stats.pages,
            stats.unchanged,
        )
        if time.monotonic() - self.beat_at >= self.every:
            heartbeat(self.run)
            self.beat_at = time.monotonic()
        self.report(self.run)


def _listing_sync(
    integration: Integration,
    run: SyncRun,
    provider: Provider,
    since: datetime | None,
    index: CorrelationIndex,
    seen_at: datetime,
    errors: RunErrors,
    tick: _Progress,
) -> set[int]:
    """Stream the listing page by page — each page's catalog files read, then the page written
    while the next one is read — and return the ids of the records it listed."""
    listed: set[int] = set()
    catalog_files_read = 0
    stored = _StoredData(integration)
    pages = ListingPages(
        provider.iter_repositories(since=since, known=stored),
        ahead=provider.reads_in_background(),
    )
    try:
        while (page := pages.take()) is not None:
            reads = catalog_files_enrich(
                provider,
                integration,
                page,
                budget=CATALOG_FILE_READS_PER_RUN - catalog_files_read,
                stored=stored.of_page(page),
            )
            catalog_files_read += reads.reads
            pages.read_next()  # while this one is written
            listed.update(
                _page_write(integration, run, reads, index=index, seen_at=seen_at, errors=errors)
            )
            tick.claim_renewed()
            tick()
    finally:
        pages.close()
    return listed


def _secondary_sync(
    integration: Integration,
    run: SyncRun,
    provider: Provider,
    seen_at: datetime,
    errors: RunErrors,
    tick: _Progress,
) -> None:
    secondary = SecondarySync(
        provider=provider,
        kinds=integration.secondary_kinds,
        start=start_datetime(integration),
        on_progress=tick,
        sweep=_sweep_candidates(integration, seen_at),
        errors=errors,
    )
    secondary.run(integration.discovered.all())
    run.pull_requests = secondary.budget.written["pull_requests"]
    run.commits = secondary.budget.written["commits"]


class _StoredData:
    """The stored records (external id → data) of the repositories being listed, read once per
    page: the provider may ask for them while listing (to skip reads that would find a
    repository unchanged, ``known``), and the catalog-file enrichment of that page needs them
    too. The provider may ask on the listing's worker thread."""

    def __init__(self, integration: Integration):
        self._integration = integration
        self._lock = threading.Lock()
        self._asked: dict[str, dict | None] = {}  # what the provider asked for and got

    def _read(self, external_ids: list[str]) -> dict[str, dict]:
        rows = DiscoveredEntity.objects.filter(
            integration=self._integration, external_id__in=external_ids
        )
        return dict(rows.values_list("external_id", "data"))

    def __call__(self, external_ids: list[str]) -> dict[str, dict]:
        stored = self._read(external_ids)
        with self._lock:
            self._asked.update({key: stored.get(key) for key in external_ids})
        return stored

    def of_page(self, page: list[RepoRecord]) -> dict[str, dict]:
        """The page's stored records: those the provider asked for, else read now."""
        ids = [record.external_id for record in page]
        with self._lock:
            if all(key in self._asked for key in ids):
                taken = {key: self._asked.pop(key) for key in ids}
                return {key: data for key, data in taken.items() if data is not None}
        return self._read(ids)


def _page_write(
    integration: Integration,
    run: SyncRun,
    reads: CatalogFileReads,
    *,
    index: CorrelationIndex,
    seen_at: datetime,
    errors: RunErrors,
) -> list[int]:
    """Write one listing page (its records with their catalog files, ``reads.records``) in one
    transaction: a crash never leaves new records without their auto-import (a re-run would no
    longer see them as new). It starts by renewing the claim: a run that stalled past the TTL
    (slow catalog-file reads) and lost it writes nothing, and a takeover waits for a page being
    written to commit."""
    page = reads.records
    with transaction.atomic():
        heartbeat(run)
        created, rows = discovered_upsert_page(
            integration=integration, records=page, index=index, seen_at=seen_at
        )
        # Known records keep the gone_at they had: those set were gone until this listing.
        returned = [row.pk for row in rows if row.gone_at is not None]
        by_external_id = {row.external_id: row for row in rows}
        for external_id, error in reads.failed.items():
            row = by_external_id[external_id]
            errors.fail(row.pk, row.name, error)
        errors.succeed(
            [by_external_id[external_id].pk for external_id in reads.read],
            ProcessingStage.CATALOG_FILE,
        )
        if returned:  # listed again: no longer gone, its entities no longer orphans
            DiscoveredEntity.objects.filter(pk__in=returned).update(gone_at=None)
            orphans_clear(discovered_ids=returned)
        imported = 0
        new_ids = {row.pk for row in created}
        # New records, and those whose import failed before (a crash or a fix since then).
        to_import = created + [
            row
            for row in rows
            if row.pk not in new_ids
            and row.state == DiscoveredState.DISCOVERED
            and ProcessingStage.IMPORT in (row.processing_errors or {})
        ]
        if integration.auto_import and to_import:
            imported = discovered_import_new(integration=integration, rows=to_import, errors=errors)
        page_ids = [row.pk for row in rows]
        # A record new in this page was imported just now from this very data: only the ones
        # known before can have linked entities to refresh.
        refreshed = imported_refresh(
            integration=integration,
            discovered_ids=[pk for pk in page_ids if pk not in new_ids],
            errors=errors,
        )
        if imported or refreshed:  # later pages correlate against what this wrote
            linked = ImportedEntity.objects.filter(discovered__in=page_ids, state=LinkState.LINKED)
            index.update(
                index_entities(
                    Entity.objects.filter(pk__in=linked.values("entity_id")), index.rules
                )
            )
        errors.flush()  # committed with the page it is about
    run.discovered += len(created)
    run.imported += imported
    run.refreshed += refreshed
    return page_ids


def _finish(
    run: SyncRun,
    state: str,
    *,
    message: str = "",
    error: str = "",
    integration: Integration | None = None,
    provider: Provider | None = None,
) -> SyncRun:
    """Record the run. A run that held the claim (``integration`` given) first refreshes the
    repositories of webhook deliveries that coalesced while it ran, and after releasing the
    claim follows up on any marked meanwhile (see :mod:`integrations.engine.targeted`)."""
    if integration is not None:
        webhook_coalesced_drain(run=run, provider=provider, tick=None)
    run.state = state
    run.message = run.message or message
    run.error = error[:5000]
    run.finished_at = timezone.now()
    run.save()
    if integration is not None:
        now = timezone.now()
        Integration.objects.filter(pk=integration.pk).update(
            last_sync_at=now, next_sync_at=now + timedelta(minutes=integration.update_frequency)
        )
        claim_release(run)
        _statistics_refresh(run)
        webhook_coalesced_followup(integration_id=integration.pk)
    return run


# A run that wrote at least this many rows (a first sync, a large refresh) refreshes the
# planner's statistics of what it wrote: PostgreSQL's autovacuum would get there only later, and
# until then the catalog's queries may be planned for the empty tables of before.
ANALYZE_AFTER_ROWS = 1000


def _statistics_refresh(run: SyncRun) -> None:
    written = run.discovered + run.imported + run.pull_requests + run.commits  # rows created
    if written < ANALYZE_AFTER_ROWS:
        return
    tables_analyze(
        DiscoveredEntity,
        ImportedEntity,
        PullRequest,
        Commit,
        Entity,
        EntitySearch,
        Relation,
    )
    logger.info("integrations.sync.statistics_refreshed", extra={"run_id": run.pk, "rows": written})
