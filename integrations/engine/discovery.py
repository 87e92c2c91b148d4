"""Discovery: records written page by page, their recommendations, and what vanished."""

import logging
from datetime import datetime

from django.db import transaction

from catalog.services import instances_insert
from integrations.choices import DiscoveredState, LinkState, RecommendedAction, Registration
from integrations.engine.correlation import CorrelationIndex
from integrations.models import DiscoveredEntity, ImportedEntity, Integration, SyncRun
from integrations.providers.base import RepoRecord

logger = logging.getLogger(__name__)


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


def discovered_mark_gone(integration: Integration, run: SyncRun, seen_at: datetime) -> None:
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
