"""Discovery: records written page by page, their recommendations, and what vanished."""

import logging
from collections.abc import Iterable
from datetime import datetime

from django.db import transaction

from catalog.models import Entity
from catalog.refs import DEFAULT_NAMESPACE, ref_key
from catalog.selectors import entities_in_scope
from catalog.services import instances_insert
from integrations.choices import (
    DiscoveredState,
    ImportAction,
    LinkState,
    RecommendedAction,
    Registration,
)
from integrations.engine.correlation import (
    CorrelationIndex,
    correlation_index_build,
    correlation_index_for,
)
from integrations.engine.imports import registration_document
from integrations.engine.orphans import orphans_mark
from integrations.models import DiscoveredEntity, ImportedEntity, Integration, SyncRun
from integrations.providers.base import RepoRecord

logger = logging.getLogger(__name__)


def entity_changes_source_of(integration_id: int) -> str:
    """The ``catalog.services.entity_changes_source`` label of an integration's own writes: its
    runs recompute their advice themselves, so their writes do not trigger a recompute."""
    return f"integration:{integration_id}"


# What a recommendation is stored as.
RECOMMENDATION_FIELDS = [
    "recommended_action",
    "suggested_entity",
    "match_candidates",
    "name_holder",
]
_ROW_FIELDS = ("pk", "name", "type", "data", *RECOMMENDATION_FIELDS)
_BATCH = 500
# The field mappings that decide the ref a Register would create (and nothing else).
_IDENTITY_PATHS = {"apiVersion", "kind", "metadata", "metadata.name", "metadata.namespace"}

Advice = tuple[str, int | None, list[dict], int | None]  # action, suggested, candidates, holder


def _recommend(
    integration: Integration, matches: list[tuple[int, str]], holder: int | None
) -> Advice:
    """The advice for a record the rules match to ``matches`` ((id, ref), by id) whose Register
    would create a name held by ``holder`` (None: free, or held by the entity this very record
    registered before it was unlinked, which a Register links again).

    Register is never advised for a name the catalog holds: the record merges into the holder
    when the rules match it (even among several candidates), else it is a conflict naming the
    holder, for a person to resolve (merge by hand, change the rules or the name mapping)."""
    candidates = [{"id": pk, "ref": ref} for pk, ref in matches]
    ids = [pk for pk, _ in matches]
    suggested = ids[0] if len(ids) == 1 else None
    if holder is not None and holder in ids:
        suggested = holder
    if integration.registration == Registration.REGISTER:
        if holder is not None:
            return RecommendedAction.CONFLICT, suggested, candidates, holder
        return RecommendedAction.REGISTER, suggested, candidates, None
    if integration.registration == Registration.MERGE:
        return RecommendedAction.MERGE, suggested, candidates, None
    if suggested is not None:
        return RecommendedAction.MERGE, suggested, candidates, None
    if holder is not None:
        return RecommendedAction.CONFLICT, None, candidates, holder
    return RecommendedAction.REGISTER, None, candidates, None


def _set_recommendation(row: DiscoveredEntity, action, suggested, candidates, holder) -> bool:
    """Store a recommendation on the row; True when it changed."""
    current = (
        row.recommended_action,
        row.suggested_entity_id,
        row.match_candidates,
        row.name_holder_id,
    )
    row.recommended_action = action
    row.suggested_entity_id = suggested
    row.match_candidates = candidates
    row.name_holder_id = holder
    return current != (action, suggested, candidates, holder)


class _Names:
    """The names Registers of an integration's records would create, and who holds them: one
    query per batch of records (not one per record)."""

    def __init__(self, integration: Integration):
        self.integration = integration
        self.active = integration.registration != Registration.MERGE  # merge-only never registers
        self.mappings = [
            mapping
            for mapping in integration.field_mappings.all()
            if mapping.catalog_path in _IDENTITY_PATHS
        ]

    def key(self, row: DiscoveredEntity) -> str | None:
        """The ref key a Register of ``row`` would create (None for a merge-only integration)."""
        if not self.active:
            return None
        document = registration_document(
            integration=self.integration, discovered=row, mappings=self.mappings
        )
        metadata = document.get("metadata") or {}
        return ref_key(
            str(document.get("kind") or ""),
            str(metadata.get("namespace") or DEFAULT_NAMESPACE),
            str(metadata.get("name") or ""),
        )

    def holders(self, rows: list[DiscoveredEntity]) -> list[int | None]:
        """Per row, the entity holding its registration name (see :func:`_recommend`)."""
        keys = [self.key(row) for row in rows]
        wanted = {key for key in keys if key}
        if not wanted:
            return [None] * len(rows)
        held = dict(Entity.objects.filter(ref_key__in=wanted).values_list("ref_key", "pk"))
        own = set()
        known = [row.pk for row in rows if row.pk is not None]
        if held and known:
            own = set(
                ImportedEntity.objects.filter(
                    discovered_id__in=known,
                    entity_id__in=list(held.values()),
                    action=ImportAction.REGISTER,
                    state=LinkState.UNLINKED,
                ).values_list("discovered_id", "entity_id")
            )
        result = []
        for row, key in zip(rows, keys, strict=True):
            holder = held.get(key) if key else None
            result.append(None if (row.pk, holder) in own else holder)
        return result


def _advise(
    integration: Integration,
    names: _Names,
    rows: list[DiscoveredEntity],
    matches: list[list[tuple[int, str]]],
) -> list[DiscoveredEntity]:
    """Set the advice of ``rows`` (``matches``: each row's); returns the rows that changed."""
    changed = []
    for start in range(0, len(rows), _BATCH):
        batch = rows[start : start + _BATCH]
        holders = names.holders(batch)
        for row, found, holder in zip(batch, matches[start : start + _BATCH], holders, strict=True):
            if _set_recommendation(row, *_recommend(integration, found, holder)):
                changed.append(row)
    return changed


def _index_matches(index: CorrelationIndex, data: dict) -> list[tuple[int, str]]:
    return [(pk, index.refs.get(pk, "")) for pk in index.match(data)]


def _not_imported(integration: Integration):
    return DiscoveredEntity.objects.filter(
        integration=integration, state=DiscoveredState.DISCOVERED
    ).only(*_ROW_FIELDS)


def recommendations_refresh(
    *, integration: Integration, index: CorrelationIndex | None = None
) -> int:
    """Recompute the advice of every record not imported, against ``index`` (as a run left it:
    entities it imported or refreshed) or, without one, an index of the catalog as it is now.
    O(records + entities) through the index; a few statements per 500 records. Returns how
    many changed."""
    if index is None:
        index = correlation_index_build(integration=integration)
    names = _Names(integration)
    changed: list[DiscoveredEntity] = []
    batch: list[DiscoveredEntity] = []
    for row in _not_imported(integration).iterator(chunk_size=_BATCH):
        batch.append(row)
        if len(batch) == _BATCH:
            changed += _advise(
                integration, names, batch, [_index_matches(index, r.data) for r in batch]
            )
            batch = []
    if batch:
        changed += _advise(
            integration, names, batch, [_index_matches(index, r.data) for r in batch]
        )
    DiscoveredEntity.objects.bulk_update(changed, RECOMMENDATION_FIELDS, batch_size=_BATCH)
    return len(changed)


def recommendations_entities_changed(
    *,
    integration: Integration,
    entity_ids: Iterable[int],
    deleted_refs: Iterable[str] = (),
) -> int:
    """Recompute the advice of the records a catalog change can affect, in proportion to the
    change: ``entity_ids`` were created, changed, renamed or deleted (``deleted_refs``: the
    ref keys deleted ones had).

    Affected are the records whose candidates, suggestion or name holder is one of them, those
    an index of only these entities matches, and those whose Register would take one of their
    names. Matching is per entity, so a record's new candidates are its stored ones minus the
    changed entities, plus the changed ones that match it now: the full index is not rebuilt.
    Returns how many records changed."""
    changed_ids = set(entity_ids)
    if not changed_ids and not deleted_refs:
        return 0
    current = dict(Entity.objects.filter(pk__in=changed_ids).values_list("pk", "ref_key"))
    keys = set(current.values()) | {key.lower() for key in deleted_refs}
    index = correlation_index_for(
        integration, entities_in_scope(scope=integration.scope).filter(pk__in=list(current))
    )
    names = _Names(integration)
    rows: list[DiscoveredEntity] = []
    matches: list[list[tuple[int, str]]] = []
    for row in _not_imported(integration).iterator(chunk_size=_BATCH):
        stored = {c["id"]: c.get("ref", "") for c in row.match_candidates or [] if "id" in c}
        fresh = index.match(row.data)
        affected = (
            fresh
            or changed_ids.intersection(stored)
            or row.suggested_entity_id in changed_ids
            or row.name_holder_id in changed_ids
            # a holder deleted (the foreign key was set to null)
            or (row.recommended_action == RecommendedAction.CONFLICT and row.name_holder_id is None)
            or (names.active and names.key(row) in keys)
        )
        if not affected:
            continue
        found = {pk: ref for pk, ref in stored.items() if pk not in changed_ids}
        found.update((pk, index.refs.get(pk, "")) for pk in fresh)
        rows.append(row)
        matches.append(sorted(found.items()))
    changed = _advise(integration, names, rows, matches)
    DiscoveredEntity.objects.bulk_update(changed, RECOMMENDATION_FIELDS, batch_size=_BATCH)
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
    created, updated, advised = [], [], []
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
            advised.append(row)
        # From the links, not the previous state: a link goes when its entity is deleted.
        row.state = DiscoveredState.IMPORTED if row.pk in linked else DiscoveredState.DISCOVERED
    # The page's names looked up in one query: Register is never advised for a taken name.
    if advised:
        matches = [_index_matches(index, row.data) for row in advised]
        _advise(integration, _Names(integration), advised, matches)
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
                "name_holder",
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
    run.gone = discovered_gone(
        discovered_ids=list(vanished.values_list("pk", flat=True)), at=seen_at
    )


def discovered_gone(*, discovered_ids: list[int], at: datetime) -> int:
    """Mark these records gone since ``at`` and their linked entities orphans; returns how
    many. What failed for a repository that no longer exists no longer needs attention."""
    gone = DiscoveredEntity.objects.filter(pk__in=discovered_ids).update(
        state=DiscoveredState.GONE, gone_at=at, processing_errors={}, error_since=None
    )
    orphans_mark(discovered_ids=discovered_ids)
    return gone
