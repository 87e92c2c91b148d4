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
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import yaml
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from catalog.importing import CatalogLoader
from catalog.models import Entity
from catalog.services import instances_insert
from integrations.choices import (
    DiscoveredState,
    IntegrationState,
    LinkState,
    RecommendedAction,
    Registration,
    SyncMode,
    SyncState,
)
from integrations.engine.correlation import (
    CorrelationIndex,
    correlation_index_build,
    index_entities,
)
from integrations.engine.imports import discovered_import_new, imported_refresh
from integrations.engine.secondary import SecondarySync
from integrations.models import DiscoveredEntity, ImportedEntity, Integration, SyncRun
from integrations.providers import registry
from integrations.providers.base import Provider, ProviderError, RepoRecord

logger = logging.getLogger(__name__)

LOCK_TTL = timedelta(minutes=10)
HEARTBEAT_SECONDS = 2.0  # how often, at most, a running sync extends its claim (and TTL / 4)
LISTING_OVERLAP = timedelta(minutes=10)
SWEEP_PER_RUN = 100
CATALOG_FILE_READS_PER_RUN = 1000
ProgressCallback = Callable[[SyncRun], None]


class SyncAborted(Exception):
    """Raised inside a run to stop it (used by tests to inject crashes)."""


class ClaimLost(SyncAborted):
    """The run's claim expired and another run took the integration over: stop writing."""


def lock_ttl() -> timedelta:
    """How long a claim lasts without a heartbeat (``LANTERN_SYNC_LOCK_TTL`` seconds, default
    ten minutes). A run renews it on every page; a worker that dies stops renewing it, so the
    integration is free again this long after its last sign of life."""
    seconds = getattr(settings, "LANTERN_SYNC_LOCK_TTL", None)
    return LOCK_TTL if seconds is None else timedelta(seconds=seconds)


def integration_claim(*, integration_id: int, run: SyncRun) -> bool:
    """Take the integration for this run, unless another live run holds it.

    A claim that expired belongs to a run whose worker died (killed, out of memory, the host
    lost): it is taken over, and that run is closed as abandoned so nobody waits for it.
    """
    now = timezone.now()
    with transaction.atomic():
        previous = (
            Integration.objects.select_for_update()
            .filter(pk=integration_id)
            .values_list("locked_by_run", "locked_until")
            .first()
        )
        claimed = (
            Integration.objects.filter(pk=integration_id)
            .filter(Q(locked_by_run__isnull=True) | Q(locked_until__lt=now))
            .update(locked_by_run=run.pk, locked_until=now + lock_ttl())
        )
    if not claimed:
        return False
    run.heartbeat_at = now
    SyncRun.objects.filter(pk=run.pk).update(heartbeat_at=now)
    if previous and previous[0] is not None and previous[0] != run.pk:
        _abandon(previous[0], expired_at=previous[1], now=now, by=f"Run {run.pk} took over.")
    return True


def _abandon(run_id: int, *, expired_at: datetime | None, now: datetime, by: str) -> None:
    """Close a run whose worker stopped without finishing it (only if it is still running)."""
    last = SyncRun.objects.filter(pk=run_id).values_list("heartbeat_at", "started_at").first()
    if last is None:
        return
    seen = last[0] or last[1]
    error = (
        f"Abandoned: the worker running this sync stopped without finishing it (last heartbeat "
        f"{seen:%Y-%m-%d %H:%M:%S} UTC; its claim expired "
        f"{expired_at:%Y-%m-%d %H:%M:%S} UTC). {by}"
        if expired_at
        else f"Abandoned: the worker running this sync stopped without finishing it. {by}"
    )
    closed = SyncRun.objects.filter(pk=run_id, state=SyncState.RUNNING).update(
        state=SyncState.FAILED, finished_at=now, error=error
    )
    if closed:
        logger.warning("integrations.sync.abandoned", extra={"run_id": run_id, "error": error})


def expired_claims_release() -> int:
    """Free every integration whose claim expired and close its run as abandoned (the beat
    calls this every minute, so a dead worker's run does not stay "running" even when no
    other run of that integration comes to take the claim over)."""
    now = timezone.now()
    released = 0
    expired = Integration.objects.filter(locked_by_run__isnull=False, locked_until__lt=now)
    for integration_id, run_id, until in expired.values_list("pk", "locked_by_run", "locked_until"):
        freed = Integration.objects.filter(
            pk=integration_id, locked_by_run=run_id, locked_until=until
        ).update(locked_by_run=None, locked_until=None)
        if freed:
            released += 1
            _abandon(run_id, expired_at=until, now=now, by="The scheduler released its claim.")
    return released


def _heartbeat(run: SyncRun) -> None:
    """Renew the claim; a run that lost it (it stalled past the TTL and another run took the
    integration over) stops rather than writing alongside that run."""
    now = timezone.now()
    renewed = Integration.objects.filter(pk=run.integration_id, locked_by_run=run.pk).update(
        locked_until=now + lock_ttl()
    )
    if not renewed:
        raise ClaimLost(
            f"Stopped: this run's claim expired (no heartbeat for {lock_ttl()}) and was released "
            "or taken over by another run"
        )
    run.heartbeat_at = now
    SyncRun.objects.filter(pk=run.pk).update(heartbeat_at=now)


def _release(run: SyncRun) -> None:
    Integration.objects.filter(pk=run.integration_id, locked_by_run=run.pk).update(
        locked_by_run=None, locked_until=None
    )


def _recommend(
    integration: Integration, index: CorrelationIndex, data: dict
) -> tuple[str, int | None, list[dict]]:
    matches = index.match(data)
    candidates = [{"id": pk, "ref": index.refs.get(pk, "")} for pk in matches]
    suggested = matches[0] if len(matches) == 1 else None
    if integration.registration == Registration.REGISTER:
        return RecommendedAction.REGISTER, suggested, candidates
    if integration.registration == Registration.MERGE:
        return RecommendedAction.MERGE, suggested, candidates
    if suggested is not None:
        return RecommendedAction.MERGE, suggested, candidates
    return RecommendedAction.REGISTER, None, candidates


def _set_recommendation(row: DiscoveredEntity, action, suggested, candidates) -> bool:
    """Store a recommendation on the row; True when it changed."""
    current = (row.recommended_action, row.suggested_entity_id, row.match_candidates)
    row.recommended_action, row.suggested_entity_id, row.match_candidates = (
        action,
        suggested,
        candidates,
    )
    return current != (action, suggested, candidates)


def recommendations_refresh(*, integration: Integration, index: CorrelationIndex) -> int:
    """Recompute the advice of records not imported against the index as the run left it
    (entities the run imported or refreshed); returns how many changed."""
    rows = DiscoveredEntity.objects.filter(
        integration=integration, state=DiscoveredState.DISCOVERED
    ).only("pk", "data", "recommended_action", "suggested_entity", "match_candidates")
    changed = [
        row
        for row in rows.iterator(chunk_size=500)
        if _set_recommendation(row, *_recommend(integration, index, row.data))
    ]
    DiscoveredEntity.objects.bulk_update(
        changed, ["recommended_action", "suggested_entity", "match_candidates"], batch_size=500
    )
    return len(changed)


def discovered_upsert_page(
    *,
    integration: Integration,
    records: list[RepoRecord],
    index: CorrelationIndex,
    seen_at: datetime,
) -> tuple[list[DiscoveredEntity], list[DiscoveredEntity]]:
    """Write one page of records; returns (created, all rows of the page)."""
    by_id = {record.external_id: record for record in records}
    existing = {
        row.external_id: row
        for row in DiscoveredEntity.objects.filter(
            integration=integration, external_id__in=list(by_id)
        )
    }
    linked = set(
        ImportedEntity.objects.filter(
            discovered__in=list(existing.values()), state=LinkState.LINKED
        ).values_list("discovered_id", flat=True)
    )
    created, updated = [], []
    for external_id, record in by_id.items():
        row = existing.get(external_id)
        if row is None:
            row = DiscoveredEntity(
                integration=integration,
                external_id=external_id,
                kind=integration.entity_kind,
                type=integration.entity_type,
            )
            created.append(row)
        else:
            updated.append(row)
        row.name = record.name[:255]
        row.data = record.data
        row.source_updated_at = record.updated_at
        row.last_seen_at = seen_at
        if row.pk not in linked:  # an imported record keeps what it was imported with
            row.kind, row.type = integration.entity_kind, integration.entity_type
            _set_recommendation(row, *_recommend(integration, index, record.data))
        # From the links, not the previous state: a link goes when its entity is deleted.
        row.state = DiscoveredState.IMPORTED if row.pk in linked else DiscoveredState.DISCOVERED
    with transaction.atomic():
        instances_insert(created)
        DiscoveredEntity.objects.bulk_update(
            updated,
            [
                "name",
                "kind",
                "type",
                "data",
                "source_updated_at",
                "last_seen_at",
                "recommended_action",
                "suggested_entity",
                "match_candidates",
                "state",
            ],
            batch_size=500,
        )
    if created and created[0].pk is None:  # backends without RETURNING
        ids = dict(
            DiscoveredEntity.objects.filter(
                integration=integration, external_id__in=[r.external_id for r in created]
            ).values_list("external_id", "pk")
        )
        for row in created:
            row.pk = row.id = ids[row.external_id]
    return created, created + updated


def _mark_gone(integration: Integration, run: SyncRun, seen_at: datetime) -> None:
    active = DiscoveredEntity.objects.filter(integration=integration).exclude(
        state=DiscoveredState.GONE
    )
    vanished = active.filter(last_seen_at__lt=seen_at)
    # The share is of what was known before this run: new records do not dilute it.
    total = active.filter(detected_at__lt=seen_at).count()
    count = vanished.count()
    if not count:
        return
    if total and count / total > integration.vanish_threshold:
        run.flagged = True
        run.message = (
            f"{count} of {total} repositories vanished from the listing at once (more than "
            f"{integration.vanish_threshold:.0%}); none were marked gone. Check the connector's "
            "permissions, then sync again or mark them gone by hand."
        )
        logger.warning(
            "integrations.sync.vanish_guard",
            extra={"integration_id": integration.pk, "run_id": run.pk, "vanished": count},
        )
        return
    run.gone = vanished.update(state=DiscoveredState.GONE)


def _catalog_info(content: bytes | None) -> dict:
    """The parts of a repository's catalog-info.yaml that enrich its entity."""
    if content is None:
        return {}
    try:
        document = next(iter(yaml.load_all(content.decode("utf-8"), Loader=CatalogLoader)), None)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        return {"error": f"catalog-info.yaml is not valid YAML: {exc}"[:300]}
    if not isinstance(document, dict):
        return {"error": "catalog-info.yaml does not hold an entity"}
    metadata = document.get("metadata") if isinstance(document.get("metadata"), dict) else {}
    spec = document.get("spec") if isinstance(document.get("spec"), dict) else {}
    return {
        "metadata": {k: metadata[k] for k in ("title", "description", "tags") if k in metadata},
        "spec": {k: spec[k] for k in ("type", "owner", "lifecycle", "system") if k in spec},
    }


def _catalog_files_enrich(
    provider: Provider, integration: Integration, page: list[RepoRecord], *, budget: int
) -> int:
    """Put each repository's catalog-info.yaml (``data["catalog_info"]``) into its record: read
    again only when the repository changed since the last read, at most ``budget`` reads."""
    if not provider.catalog_file:
        return 0
    previous = dict(
        DiscoveredEntity.objects.filter(
            integration=integration, external_id__in=[r.external_id for r in page]
        ).values_list("external_id", "data")
    )
    reads = 0
    for record in page:
        stamp = record.updated_at.isoformat() if record.updated_at else None
        known = previous.get(record.external_id) or {}
        if "catalog_info" in known and (stamp is None or known.get("catalog_info_stamp") == stamp):
            record.data["catalog_info"] = known["catalog_info"]
            record.data["catalog_info_stamp"] = known.get("catalog_info_stamp")
            continue
        if reads >= budget:  # read on a later run; keep what we had meanwhile
            if "catalog_info" in known:
                record.data["catalog_info"] = known["catalog_info"]
                record.data["catalog_info_stamp"] = known.get("catalog_info_stamp")
            continue
        record.data["catalog_info"] = _catalog_info(
            provider.read_file(record.data, provider.catalog_file)
        )
        record.data["catalog_info_stamp"] = stamp
        reads += 1
    return reads


_END = object()


class _Listing:
    """The listing's pages. With ``ahead`` (a provider whose reads may run on a worker thread),
    the next page is read on a worker while the current one is written — asked for once the
    current page's catalog files are read, so the requests are the ones made without it, in
    the same order, and a page's error is raised when its turn comes."""

    def __init__(self, pages: Iterator[list[RepoRecord]], *, ahead: bool):
        self._pages = pages
        self._executor = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="lantern-listing")
            if ahead
            else None
        )
        self._next: Future | None = None

    def read_next(self) -> None:
        if self._executor is not None and self._next is None:
            self._next = self._executor.submit(next, self._pages, _END)

    def take(self) -> list[RepoRecord] | None:
        """The next page; ``None`` after the last."""
        if self._next is not None:
            future, self._next = self._next, None
            page = future.result()
        else:
            page = next(self._pages, _END)
        return None if page is _END else page

    def close(self) -> None:
        """A page being read is waited for (the client is not shared), then paging stops."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
        close = getattr(self._pages, "close", None)
        if close is not None:
            close()


def _start_datetime(integration: Integration) -> datetime | None:
    if integration.start_date is None:
        return None
    return datetime.combine(integration.start_date, datetime.min.time(), tzinfo=UTC)


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
    listing runs every ``full_sync_interval`` and incremental ones in between.
    """
    integration = Integration.objects.select_related("connector").get(pk=integration_id)
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
    progress = on_progress or (lambda run: None)

    beat = {"at": time.monotonic(), "every": min(HEARTBEAT_SECONDS, lock_ttl().total_seconds() / 4)}

    def tick() -> None:
        run.requests = provider.stats.requests
        run.pages = provider.stats.pages
        if time.monotonic() - beat["at"] >= beat["every"]:  # not one UPDATE per request
            _heartbeat(run)
            beat["at"] = time.monotonic()
        progress(run)

    try:
        provider = provider or registry.for_integration(integration)
        index = correlation_index_build(integration=integration)
        seen_at = timezone.now()
        catalog_files_read = 0
        pages = _Listing(
            provider.iter_repositories(since=since), ahead=provider.reads_in_background()
        )
        try:
            while (page := pages.take()) is not None:
                catalog_files_read += _catalog_files_enrich(
                    provider,
                    integration,
                    page,
                    budget=CATALOG_FILE_READS_PER_RUN - catalog_files_read,
                )
                pages.read_next()  # while this one is written
                # One transaction per page: a crash never leaves new records without their
                # auto-import (a re-run would no longer see them as new). It starts by renewing
                # the claim: a run that stalled past the TTL (slow catalog-file reads) and lost
                # it writes nothing, and a takeover waits for a page being written to commit.
                with transaction.atomic():
                    _heartbeat(run)
                    beat["at"] = time.monotonic()
                    created, rows = discovered_upsert_page(
                        integration=integration, records=page, index=index, seen_at=seen_at
                    )
                    imported = 0
                    if integration.auto_import and created:
                        imported = discovered_import_new(integration=integration, rows=created)
                    page_ids = [row.pk for row in rows]
                    # A record new in this page was imported just now from this very data: only
                    # the ones known before can have linked entities to refresh.
                    new_ids = {row.pk for row in created}
                    refreshed = imported_refresh(
                        integration=integration,
                        discovered_ids=[pk for pk in page_ids if pk not in new_ids],
                    )
                    if imported or refreshed:  # later pages correlate against what this wrote
                        linked = ImportedEntity.objects.filter(
                            discovered__in=page_ids, state=LinkState.LINKED
                        )
                        index.update(
                            index_entities(
                                Entity.objects.filter(pk__in=linked.values("entity_id")),
                                index.rules,
                            )
                        )
                run.discovered += len(created)
                run.imported += imported
                run.refreshed += refreshed
                tick()
        finally:
            pages.close()
        if index.changed:
            recommendations_refresh(integration=integration, index=index)
        if mode == SyncMode.FULL:  # only a complete listing can tell what vanished
            _mark_gone(integration, run, seen_at)
        Integration.objects.filter(pk=integration.pk).update(
            last_listing_at=seen_at,
            **({"last_full_sync_at": seen_at} if mode == SyncMode.FULL else {}),
        )
        if integration.secondary_kinds:
            secondary = SecondarySync(
                provider=provider,
                kinds=integration.secondary_kinds,
                start=_start_datetime(integration),
                on_progress=tick,
                sweep=_sweep_candidates(integration, seen_at),
            )
            secondary.run(integration.discovered.all())
            run.pull_requests = secondary.budget.written["pull_requests"]
            run.commits = secondary.budget.written["commits"]
        tick()
    except ProviderError as exc:
        logger.warning("integrations.sync.failed", extra={**log_extra, "error": exc.message})
        return _finish(run, SyncState.FAILED, error=exc.message, integration=integration)
    except Exception as exc:
        logger.exception("integrations.sync.crashed", extra=log_extra)
        return _finish(
            run, SyncState.FAILED, error=f"{type(exc).__name__}: {exc}", integration=integration
        )
    logger.info("integrations.sync.succeeded", extra=log_extra)
    return _finish(run, SyncState.SUCCEEDED, integration=integration)


def _finish(
    run: SyncRun,
    state: str,
    *,
    message: str = "",
    error: str = "",
    integration: Integration | None = None,
) -> SyncRun:
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
        _release(run)
    return run
