"""Writes to the catalog. Every entity write goes through :func:`entities_upsert`, which keeps the
relation rows and the search rows in step with the entity in the same transaction."""

import contextlib
import contextvars
import logging
import threading
import uuid
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from catalog.models import Entity, EntitySearch, Relation, Scope
from catalog.refs import DEFAULT_NAMESPACE, EntityRef, ref_key
from catalog.relations import INVERSE, declared_relations
from catalog.rendering import entity_document
from catalog.search import search_rows
from catalog.validation import EntityValidationError, ValidationIssue, validate_entity_document
from portal.bulk import instances_insert, rows_insert, tables_analyze

logger = logging.getLogger(__name__)

# Columns an entity document is stored into; compared to decide whether the etag changes.
_CONTENT_FIELDS = (
    "api_version",
    "kind",
    "namespace",
    "name",
    "title",
    "description",
    "spec_type",
    "owner",
    "lifecycle",
    "system",
    "tags",
    "labels",
    "annotations",
    "links",
    "metadata_extra",
    "spec",
    "scope_id",
)
# Metadata keys stored in their own columns (or generated); anything else is kept as is.
_METADATA_COLUMNS = {
    "name",
    "namespace",
    "uid",
    "etag",
    "title",
    "description",
    "labels",
    "annotations",
    "tags",
    "links",
    "integration",
}


@dataclass(frozen=True)
class UpsertResult:
    entities: list[Entity]
    created: int
    updated: int
    unchanged: int


class DocumentError(ValueError):
    """A document of a batch is invalid; ``index`` is its position (0-based) in the batch."""

    def __init__(self, index: int, issues: list[ValidationIssue], label: str = ""):
        self.index = index
        self.issues = issues
        self.label = label
        where = label or f"document {index + 1}"
        super().__init__(f"{where}: " + "; ".join(str(issue) for issue in issues))


def _columns_from_document(document: dict) -> dict:
    metadata = document.get("metadata") or {}
    spec = document.get("spec") or {}
    return {
        "api_version": document["apiVersion"],
        "kind": document["kind"],
        "namespace": metadata.get("namespace") or DEFAULT_NAMESPACE,
        "name": metadata["name"],
        "title": metadata.get("title") or "",
        "description": metadata.get("description") or "",
        "spec_type": str(spec.get("type") or ""),
        "owner": str(spec.get("owner") or ""),
        "lifecycle": str(spec.get("lifecycle") or ""),
        "system": str(spec.get("system") or ""),
        "tags": list(metadata.get("tags") or []),
        "labels": dict(metadata.get("labels") or {}),
        "annotations": dict(metadata.get("annotations") or {}),
        "links": list(metadata.get("links") or []),
        "metadata_extra": {k: v for k, v in metadata.items() if k not in _METADATA_COLUMNS},
        "spec": dict(spec),
    }


def entities_upsert(
    *,
    documents: Sequence[dict],
    scope: Scope | None = None,
    labels: Sequence[str] | None = None,
    ingested: Mapping[str, tuple[list, dict]] | None = None,
    uids: Mapping[str, uuid.UUID] | None = None,
) -> UpsertResult:
    """Validate and create-or-update entities by ref, atomically: all documents or none.

    Raises :class:`DocumentError` naming the first invalid document (and a duplicate ref within
    the batch) before anything is written.

    ``ingested`` (the integrations engine registering entities): ref key → (metadata.integration
    items, integration_properties) of each entity this call *creates*, so they are written and
    indexed with it rather than by a second write of every new entity; entities that already
    existed keep theirs. ``uids``: ref key → the uid an entity this call creates gets, so the
    links made beforehand can name it.
    """
    columns_by_key: dict[str, dict] = {}
    for index, document in enumerate(documents):
        label = labels[index] if labels else ""
        key, columns = _validated_columns(document, index, label, seen=columns_by_key)
        columns_by_key[key] = columns
    return _entities_write(columns_by_key, scope=scope, ingested=ingested, uids=uids)


def _validated_columns(
    document: dict, index: int, label: str, *, seen: Container[str]
) -> tuple[str, dict]:
    """The document's ref key and columns; a :class:`DocumentError` if it is invalid or its ref
    is one of ``seen`` (already in the same batch)."""
    issues = validate_entity_document(document)
    if issues:
        raise DocumentError(index, issues, label)
    columns = _columns_from_document(document)
    key = ref_key(columns["kind"], columns["namespace"], columns["name"])
    if key in seen:
        raise DocumentError(
            index,
            [ValidationIssue("metadata.name", f"duplicate entity {key} in the same batch")],
            label,
        )
    return key, columns


def _entities_write(
    columns_by_key: dict[str, dict],
    *,
    scope: Scope | None,
    ingested: Mapping[str, tuple[list, dict]] | None = None,
    uids: Mapping[str, uuid.UUID] | None = None,
) -> UpsertResult:
    """Create or update the entities of valid documents' columns, by ref key."""
    if scope is not None:
        for columns in columns_by_key.values():
            columns["scope_id"] = scope.pk
    with transaction.atomic():
        existing = {
            entity.ref_key: entity
            for entity in Entity.objects.select_for_update().filter(
                ref_key__in=list(columns_by_key)
            )
        }
        to_create: list[Entity] = []
        to_update: list[Entity] = []
        entities: list[Entity] = []
        unchanged = 0
        for key, columns in columns_by_key.items():
            entity = existing.get(key)
            if entity is None:
                entity = Entity(**columns, ref_key=key, etag=uuid.uuid4().hex)
                if uids and key in uids:
                    entity.uid = uids[key]
                if ingested and key in ingested:
                    entity.integration_links, entity.integration_properties = ingested[key]
                to_create.append(entity)
            elif any(getattr(entity, f) != columns[f] for f in columns):
                for field, value in columns.items():
                    setattr(entity, field, value)
                entity.ref_key = key
                entity.etag = uuid.uuid4().hex
                entity.updated_at = timezone.now()
                to_update.append(entity)
            else:
                unchanged += 1
            entities.append(entity)
        instances_insert(to_create)
        if to_create and to_create[0].pk is None:  # backends without RETURNING
            ids = dict(
                Entity.objects.filter(ref_key__in=[e.ref_key for e in to_create]).values_list(
                    "ref_key", "pk"
                )
            )
            for entity in to_create:
                entity.pk = entity.id = ids[entity.ref_key]
        if to_update:
            fields = [f for f in _CONTENT_FIELDS if f != "scope_id" or scope is not None]
            fields = [("scope" if f == "scope_id" else f) for f in fields]
            fields += ["ref_key", "etag", "updated_at"]
            Entity.objects.bulk_update(to_update, fields, batch_size=500)
        entities_index(entities=to_create + to_update, created=to_create)
    logger.info(
        "catalog.entities.upserted",
        extra={
            "entities_created": len(to_create),
            "entities_updated": len(to_update),
            "entities_unchanged": unchanged,
        },
    )
    return UpsertResult(entities, len(to_create), len(to_update), unchanged)


def entity_upsert(*, document: dict, scope: Scope | None = None) -> Entity:
    try:
        return entities_upsert(documents=[document], scope=scope).entities[0]
    except DocumentError as exc:
        raise EntityValidationError(exc.issues) from exc


IMPORT_BATCH = 1000
_CHECKSUM_MODULUS = 2**64


@dataclass(frozen=True)
class ImportResult:
    documents: int
    created: int
    updated: int
    unchanged: int


def entities_import(
    *,
    sources: Callable[[], Iterable[tuple[dict, str]]],
    scope: Scope | None = None,
    batch_size: int = IMPORT_BATCH,
    progress: Callable[[str, int], None] | None = None,
) -> ImportResult:
    """Import more documents than fit in memory, all or nothing, in flat memory.

    ``sources`` gives a fresh iterator of ``(document, label)`` on each call; it is read twice.
    The first pass validates every document and checks that refs are unique, keeping only the
    ref keys, so an invalid document anywhere fails the import before anything is written. The
    second pass writes batches of ``batch_size`` in one transaction, so a failure while writing
    (a database error, a document changed between the passes) leaves nothing either. A raised
    :class:`DocumentError` names the document. ``progress(stage, done)`` hears of each batch."""
    seen: set[str] = set()
    for index, (document, label) in enumerate(sources()):
        key, _ = _validated_columns(document, index, label, seen=seen)
        seen.add(key)
        if progress and (index + 1) % batch_size == 0:
            progress("validated", index + 1)
    created = updated = unchanged = 0
    with transaction.atomic():
        batch: dict[str, dict] = {}
        # The second pass must read the refs the first validated: their count and an
        # order-free checksum say so without holding a second set.
        count, checksum = 0, 0
        for index, (document, label) in enumerate(sources()):
            key, columns = _validated_columns(document, index, label, seen=batch)
            count, checksum = count + 1, (checksum + hash(key)) % _CHECKSUM_MODULUS
            batch[key] = columns
            if len(batch) == batch_size:
                result = _entities_write(batch, scope=scope)
                created, updated = created + result.created, updated + result.updated
                unchanged += result.unchanged
                batch = {}
                if progress:
                    progress("written", index + 1)
        if batch:
            result = _entities_write(batch, scope=scope)
            created, updated = created + result.created, updated + result.updated
            unchanged += result.unchanged
        if count != len(seen) or checksum != sum(map(hash, seen)) % _CHECKSUM_MODULUS:
            raise DocumentError(
                count, [ValidationIssue("", "the files changed while they were imported")]
            )
    tables_analyze(Entity, EntitySearch, Relation)
    return ImportResult(len(seen), created, updated, unchanged)


def entities_index(*, entities: Iterable[Entity], created: Iterable[Entity] = ()) -> None:
    """Rewrite the relation rows and search rows that these entities originate (``created``:
    entities inserted in this transaction, which have none yet to delete)."""
    entities = list(entities)
    if not entities:
        return
    new_ids = {entity.pk for entity in created}
    ids = [entity.pk for entity in entities if entity.pk not in new_ids]
    if ids:
        Relation.objects.filter(originating_entity_id__in=ids).delete()
        EntitySearch.objects.filter(entity_id__in=ids).delete()
    relations: list[tuple] = []
    rows: list[tuple] = []
    for entity in entities:
        source = EntityRef(entity.kind, entity.namespace, entity.name)
        for declared in declared_relations(entity.kind, entity.namespace, entity.spec or {}):
            target = declared.target
            relations.append((entity.pk, source.key, declared.type, str(target), target.key))
            relations.append(
                (entity.pk, target.key, INVERSE[declared.type], str(source), source.key)
            )
        rows += [(entity.pk, *row) for row in search_rows(entity_document(entity))]
    rows_insert(Relation, _RELATION_COLUMNS, relations)
    rows_insert(EntitySearch, _SEARCH_COLUMNS, rows)
    _entity_changes_record(written={entity.pk: entity.ref_key for entity in entities})


_RELATION_COLUMNS = ("originating_entity_id", "source_key", "type", "target_ref", "target_key")
_SEARCH_COLUMNS = ("entity_id", "key", "value", "original_value")


def entity_delete(*, entity: Entity) -> None:
    """Delete an entity; its relation and search rows go with it (cascade)."""
    deleted = {entity.pk: entity.ref_key}
    entity.delete()
    _entity_changes_record(deleted=deleted)
    logger.info("catalog.entity.deleted", extra={"entity_ref": entity.ref})


def entities_ingested_write(*, ingested: dict[int, tuple[list, dict]]) -> int:
    """Write the ingested properties of entities: ``{entity id: (metadata.integration items,
    integration_properties)}``. Only the integrations engine calls this; the rest of each document
    stays as its owner set it. Returns how many entities changed."""
    if not ingested:
        return 0
    changed = []
    rows = Entity.objects.select_for_update().filter(pk__in=list(ingested))
    for entity in rows.only("pk", "integration_links", "integration_properties", "etag"):
        links, properties = ingested[entity.pk]
        if entity.integration_links != links or entity.integration_properties != properties:
            entity.integration_links = links
            entity.integration_properties = properties
            entity.etag = uuid.uuid4().hex
            entity.updated_at = timezone.now()
            changed.append(entity)
    if changed:
        Entity.objects.bulk_update(
            changed,
            ["integration_links", "integration_properties", "etag", "updated_at"],
            batch_size=500,
        )
        _ingested_index(changed)
    return len(changed)


# The parts of a document that ingested properties make: their search rows are the only ones an
# ingested write changes (relations come from spec alone).
_INGESTED_KEYS = ("metadata.integration", "integration_properties")


def _is_ingested_key(key: str) -> bool:
    return any(key == root or key.startswith(root + ".") for root in _INGESTED_KEYS)


def _ingested_index(entities: list[Entity]) -> None:
    """Rewrite the search rows of these entities' ingested properties, and only those."""
    ingested_q = Q()
    for root in _INGESTED_KEYS:
        ingested_q |= Q(key=root) | Q(key__startswith=root + ".")
    EntitySearch.objects.filter(ingested_q, entity_id__in=[e.pk for e in entities]).delete()
    rows = []
    for entity in entities:
        partial: dict = {"metadata": {}}  # as entity_document renders them
        if entity.integration_links:
            partial["metadata"]["integration"] = entity.integration_links
        if entity.integration_properties:
            partial["integration_properties"] = entity.integration_properties
        rows += [(entity.pk, *row) for row in search_rows(partial) if _is_ingested_key(row[0])]
    rows_insert(EntitySearch, _SEARCH_COLUMNS, rows)


# Handlers that can refresh an entity from its source (the integrations app registers one).
# The catalog does not import integrations; it only calls what was registered.
RefreshHandler = Callable[[Entity], bool]
_refresh_handlers: list[RefreshHandler] = []


def refresh_handler_register(handler: RefreshHandler) -> None:
    if handler not in _refresh_handlers:
        _refresh_handlers.append(handler)


def entity_refresh_request(*, entity: Entity) -> bool:
    """Ask every registered source to refresh the entity; True when one scheduled a refresh."""
    scheduled = False
    for handler in _refresh_handlers:
        scheduled = handler(entity) or scheduled
    logger.info(
        "catalog.entity.refresh_requested",
        extra={"entity_ref": entity.ref, "scheduled": scheduled},
    )
    return scheduled


# -- entity changes: an explicit hook for what depends on the catalog's contents -------------
# The integrations app keeps its recommendations (which discovered record is which entity, which
# names are taken) in step with the catalog. The catalog does not import integrations; it tells
# whoever subscribed, once per committed transaction, which entities were written or deleted.


@dataclass(frozen=True)
class EntityChanges:
    """Entities one committed transaction created or changed (``written``: id → ref key, a
    rename included) or deleted (id → the ref key it had), by ``source`` (see
    :func:`entity_changes_source`; empty when the writer did not say).

    A hint of where to look, not the truth: a subscriber reads the entities' current state
    from the database (a change made in a savepoint that was rolled back is still delivered
    with its transaction)."""

    written: dict[int, str]
    deleted: dict[int, str]
    source: str = ""


EntityChangesCallback = Callable[[EntityChanges], None]
_change_subscribers: list[EntityChangesCallback] = []
_change_source: contextvars.ContextVar[str] = contextvars.ContextVar(
    "catalog_entity_change_source", default=""
)
_pending_changes = threading.local()  # .deliver: the current transaction's delivery


def entity_changes_subscribe(callback: EntityChangesCallback) -> None:
    """Call ``callback(EntityChanges)`` after each commit that created, changed, renamed or
    deleted entities — one call per transaction and source however many entities it wrote
    (an import of 1,000 entities is one call). Subscribe from ``AppConfig.ready()``. A
    callback's exception is logged and does not reach the writer, whose data is committed."""
    if callback not in _change_subscribers:
        _change_subscribers.append(callback)


def entity_changes_unsubscribe(callback: EntityChangesCallback) -> None:
    if callback in _change_subscribers:
        _change_subscribers.remove(callback)


@contextlib.contextmanager
def entity_changes_source(source: str) -> Iterator[None]:
    """Label the entity writes made inside the block (e.g. ``"integration:7"`` for that
    integration's sync), so a subscriber can skip the changes it made itself."""
    token = _change_source.set(source)
    try:
        yield
    finally:
        _change_source.reset(token)


def _entity_changes_record(
    *, written: dict[int, str] | None = None, deleted: dict[int, str] | None = None
) -> None:
    if not _change_subscribers or not (written or deleted):
        return
    connection = transaction.get_connection()
    batches = _pending_batches(connection) if connection.in_atomic_block else {}
    pending_written, pending_deleted = batches.setdefault(_change_source.get(), ({}, {}))
    for pk, key in (written or {}).items():
        pending_written[pk] = key
        pending_deleted.pop(pk, None)
    for pk, key in (deleted or {}).items():
        pending_deleted[pk] = key
        pending_written.pop(pk, None)
    if not connection.in_atomic_block:  # autocommit: the write is committed already
        _entity_changes_deliver(batches)


def _pending_batches(connection) -> dict:
    """The changes of the current transaction, delivered once on its commit. A new batch when
    the last was delivered or its transaction rolled back (its delivery is then no longer among
    the connection's on-commit callbacks), so nothing rolled back is delivered later."""
    deliver = getattr(_pending_changes, "deliver", None)
    waiting = getattr(connection, "run_on_commit", None) or []
    if deliver is not None and any(entry[1] is deliver for entry in waiting):
        return deliver.batches
    batches: dict = {}

    def deliver() -> None:
        if getattr(_pending_changes, "deliver", None) is deliver:
            _pending_changes.deliver = None
        _entity_changes_deliver(batches)

    deliver.batches = batches
    _pending_changes.deliver = deliver
    transaction.on_commit(deliver)
    return batches


def _entity_changes_deliver(batches: dict) -> None:
    for source, (written, deleted) in batches.items():
        changes = EntityChanges(written=written, deleted=deleted, source=source)
        for callback in list(_change_subscribers):
            try:
                callback(changes)
            except Exception:
                logger.exception(
                    "catalog.entity_changes.subscriber_failed",
                    extra={"written": len(written), "deleted": len(deleted), "source": source},
                )


# -- processing status: Backstage's ``status.items`` -------------------------------------------

PROCESSING_STATUS_TYPE = "backstage.io/catalog-processing"


def processing_error_item(*, name: str, message: str) -> dict:
    """One ``status.items`` entry as Backstage's processing engine writes it for a failure, so
    its entity page shows the error."""
    return {
        "type": PROCESSING_STATUS_TYPE,
        "level": "error",
        "message": f"{name}: {message}",
        "error": {"name": name, "message": message},
    }


def entities_status_write(*, statuses: Mapping[int, list[dict]]) -> int:
    """Replace the ``status.items`` of entities (id → items; an empty list clears them), for
    whoever refreshes them (a location, an integration). Returns how many changed; those get a
    new etag, as their documents changed."""
    if not statuses:
        return 0
    changed = []
    rows = Entity.objects.filter(pk__in=list(statuses)).only("pk", "status_items", "etag")
    for entity in rows:
        items = list(statuses[entity.pk])
        if (entity.status_items or []) != items:
            entity.status_items = items
            entity.etag = uuid.uuid4().hex
            entity.updated_at = timezone.now()
            changed.append(entity)
    if changed:
        Entity.objects.bulk_update(changed, ["status_items", "etag", "updated_at"], batch_size=500)
    return len(changed)
