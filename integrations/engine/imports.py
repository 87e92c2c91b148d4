"""Import actions: register, merge, register & merge, unlink — and keeping imported entities'
ingested properties in step with what was discovered."""

import copy
import logging
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from catalog.models import Entity
from catalog.refs import DEFAULT_NAMESPACE, ref_key
from catalog.rendering import source_document
from catalog.selectors import entities_in_scope
from catalog.services import DocumentError, entities_ingested_write, entities_upsert
from catalog.validation import ValidationIssue, as_entity_name, validate_entity_document
from integrations.choices import (
    DiscoveredState,
    ImportAction,
    LinkState,
    ProcessingStage,
    RecommendedAction,
    Registration,
)
from integrations.engine.correlation import correlation_index_for
from integrations.engine.mapping import ExpressionError, catalog_path_parts, search, set_path
from integrations.engine.processing import RecordError, RunErrors, processing_errors_clear
from integrations.models import DiscoveredEntity, ImportedEntity, Integration
from integrations.providers import registry

logger = logging.getLogger(__name__)


class ImportRefused(ValueError):
    """An import that the integration's settings or the catalog's state do not allow.

    ``reason`` is short and groups a run's errors ("invalid entity", "name taken");
    ``issues``: what is invalid in the mapped entity; ``holder``: the entity holding the name."""

    def __init__(
        self,
        message: str,
        *,
        reason: str = "refused",
        issues: list[ValidationIssue] | None = None,
        holder: str = "",
    ):
        super().__init__(message)
        self.reason = reason
        self.issues = issues or []
        self.holder = holder


@dataclass(frozen=True)
class ImportRequest:
    discovered_id: int
    action: str | None = None  # "register" | "merge" | None (the recommendation)
    entity_id: int | None = None  # merge target chosen by the user
    entity_type: str | None = None


IMPORTED_ELSEWHERE = "imported by another integration"


def _host(integration: Integration) -> str:
    return registry.get(integration.provider).instance_key(integration.connector)


def repositories_imported_elsewhere(
    *, integration: Integration, external_ids: Iterable[str]
) -> dict[str, tuple[str, str]]:
    """The repositories (by external id) that another integration of the same provider and
    instance has linked to a catalog entity: ``{external id: (its name, the entity's ref)}``.
    One repository is one entity: a second integration that covers it (overlapping targets)
    must not register or merge it again."""
    ids = [external_id for external_id in external_ids if external_id]
    if not ids:
        return {}
    links = (
        ImportedEntity.objects.filter(
            state=LinkState.LINKED,
            discovered__external_id__in=ids,
            integration__provider=integration.provider,
        )
        .exclude(integration_id=integration.pk)
        .select_related("integration__connector", "entity", "discovered")
    )
    host = _host(integration)
    found: dict[str, tuple[str, str]] = {}
    for link in links:
        if _host(link.integration) == host:
            found.setdefault(link.discovered.external_id, (link.integration.name, link.entity.ref))
    return found


def _imported_elsewhere(discovered: DiscoveredEntity, holder: tuple[str, str]) -> ImportRefused:
    other, entity_ref = holder
    return ImportRefused(
        f"{discovered.name} is already imported by integration {other} (as {entity_ref})",
        reason=IMPORTED_ELSEWHERE,
        holder=other,
    )


def entity_name_from(raw: str) -> str:
    """A Backstage-valid entity name from a repository name or slug: the name itself when it
    is valid, else what ``to_entity_name()`` makes of it (the same for the same name, so a
    re-import finds the entity it registered)."""
    return as_entity_name(raw) or "unnamed"


# Paths that identify an entity: mapped when registering, never changed by a refresh.
_IDENTITY_PATHS = {"apiVersion", "kind", "metadata.name", "metadata.namespace"}


def _apply_mappings(
    document: dict,
    integration: Integration,
    data: dict,
    *,
    only_if_empty: bool,
    identity: bool = False,
    mappings: list | None = None,
    failures: list | None = None,
) -> None:
    """Set the integration's field mappings on ``document`` (``mappings``: already loaded).

    An expression that fails on this record (a function given the wrong type) sets nothing;
    ``failures`` collects (mapping, error) so the caller can say so on the record."""
    for mapping in integration.field_mappings.all() if mappings is None else mappings:
        if not identity and mapping.catalog_path in _IDENTITY_PATHS:
            continue
        try:
            value = search(mapping.expression, data)
        except ExpressionError as exc:
            if failures is not None:
                failures.append((mapping, exc))
            continue
        if value is not None:
            set_path(document, mapping.catalog_path, value, only_if_empty=only_if_empty)


def registration_document(
    *,
    integration: Integration,
    discovered: DiscoveredEntity,
    entity_type: str | None = None,
    mappings: list | None = None,
    failures: list | None = None,
) -> dict:
    """The entity a Register creates: defaults, then the integration's field mappings
    (``failures``: see :func:`_apply_mappings`)."""
    document = {
        "apiVersion": "backstage.io/v1alpha1",
        "kind": integration.entity_kind,
        "metadata": {"name": entity_name_from(discovered.name), "namespace": DEFAULT_NAMESPACE},
        "spec": {
            "type": entity_type or discovered.type or integration.entity_type or "service",
            "lifecycle": "production",
            "owner": "unknown",
        },
    }
    data = discovered.data
    _apply_mappings(
        document,
        integration,
        data,
        only_if_empty=False,
        identity=True,
        mappings=mappings,
        failures=failures,
    )
    if entity_type:
        document["spec"]["type"] = entity_type
    return document


def _write(documents: list[dict], label: str, scope=None) -> list[Entity]:
    """Upsert the import's entities (``scope``: a registration's, so only its scope sees it;
    ``None`` leaves an existing entity's scope as it is)."""
    try:
        return entities_upsert(documents=documents, scope=scope).entities
    except DocumentError as exc:
        raise ImportRefused(
            f"{label}: the mapped entity is invalid: {exc}",
            reason=INVALID_ENTITY,
            issues=exc.issues,
        ) from exc
    except IntegrityError as exc:
        if not name_taken(exc):
            raise
        # Another import registered the name since we looked.
        raise ImportRefused(
            f"{label}: the entity was registered meanwhile: merge into it", reason=NAME_TAKEN
        ) from exc


def name_taken(exc: IntegrityError) -> bool:
    """Whether the error is the unique entity ref refusing a second entity of the same name
    (any other integrity error is a real failure and stays one)."""
    cause = exc.__cause__
    constraint = getattr(getattr(cause, "diag", None), "constraint_name", None) or ""
    if getattr(cause, "sqlstate", None):  # PostgreSQL names the violated constraint
        return cause.sqlstate == "23505" and "ref_key" in constraint
    return "UNIQUE" in str(exc) and "ref_key" in str(exc)


def discovered_import(
    *,
    discovered: DiscoveredEntity,
    action: str | None = None,
    entity: Entity | None = None,
    entity_type: str | None = None,
    user=None,
) -> ImportedEntity:
    """Import one discovered record by the integration's registration behaviour."""
    integration = discovered.integration
    if discovered.state == DiscoveredState.GONE:
        raise ImportRefused(f"{discovered.name} no longer exists in the source")
    if discovered.imports.filter(state=LinkState.LINKED).exists():
        raise ImportRefused(f"{discovered.name} is already imported")
    elsewhere = repositories_imported_elsewhere(
        integration=integration, external_ids=[discovered.external_id]
    )
    if discovered.external_id in elsewhere:
        refusal = _imported_elsewhere(discovered, elsewhere[discovered.external_id])
        _conflict_record(discovered, refusal)
        raise refusal
    behaviour = integration.registration
    if action is None:
        # A register-only integration registers even when correlation suggests an entity.
        action = (
            RecommendedAction.MERGE
            if behaviour != Registration.REGISTER
            and (entity is not None or discovered.suggested_entity_id)
            else RecommendedAction.REGISTER
        )
    if action not in RecommendedAction.values:
        raise ImportRefused(f"Unknown import action {action!r}: use register or merge")
    if behaviour == Registration.REGISTER and action == RecommendedAction.MERGE:
        raise ImportRefused(f"Integration {integration.name} only registers new entities")
    if behaviour == Registration.MERGE and action == RecommendedAction.REGISTER:
        raise ImportRefused(
            f"Integration {integration.name} only merges into existing entities: choose the "
            f"entity {discovered.name} belongs to"
        )
    if action == RecommendedAction.MERGE:
        if entity_type:
            raise ImportRefused("The type cannot be set when merging into an existing entity")
        target = entity or discovered.suggested_entity
        if target is None:
            raise ImportRefused(
                f"{discovered.name} has no matching catalog entity: choose one to merge into"
            )
        return _merge(discovered, target, user)
    return _register(discovered, entity_type, user)


def _conflict_record(discovered: DiscoveredEntity, refusal: ImportRefused) -> None:
    """Keep the conflict on the record (stage import), as a run's refusal is kept, so the UI,
    API and CLI show it with the record's other errors until the import succeeds."""
    errors = RunErrors()
    errors.fail(discovered.pk, discovered.name, refusal_error(ProcessingStage.IMPORT, refusal, []))
    errors.flush()


@transaction.atomic
def _register(discovered: DiscoveredEntity, entity_type: str | None, user) -> ImportedEntity:
    integration = discovered.integration
    document = registration_document(
        integration=integration, discovered=discovered, entity_type=entity_type
    )
    metadata = document["metadata"]
    key = ref_key(document["kind"], metadata.get("namespace") or "default", metadata["name"])
    existing = Entity.objects.filter(ref_key=key).first()
    if existing is not None:
        # Re-import after an unlink: the entity this record registered is linked again.
        if discovered.imports.filter(
            entity=existing, action=ImportAction.REGISTER, state=LinkState.UNLINKED
        ).exists():
            return _link(discovered, existing, ImportAction.REGISTER, user)
        raise ImportRefused(
            f"The entity {existing.ref} already exists: merge {discovered.name} into it",
            reason=NAME_TAKEN,
            holder=existing.ref,
        )
    (entity,) = _write([document], discovered.name, scope=integration.scope)
    return _link(discovered, entity, ImportAction.REGISTER, user)


@transaction.atomic
def _merge(discovered: DiscoveredEntity, entity: Entity, user) -> ImportedEntity:
    document = source_document(entity)
    enriched = copy.deepcopy(document)
    _apply_mappings(enriched, discovered.integration, discovered.data, only_if_empty=True)
    if enriched != document:
        _write([enriched], discovered.name)
    return _link(discovered, entity, ImportAction.MERGE, user)


def _link(discovered: DiscoveredEntity, entity: Entity, action: str, user) -> ImportedEntity:
    imported = ImportedEntity.objects.create(
        integration=discovered.integration,
        discovered=discovered,
        entity=entity,
        action=action,
        imported_by=user if user is not None and user.is_authenticated else None,
    )
    DiscoveredEntity.objects.filter(pk=discovered.pk).update(state=DiscoveredState.IMPORTED)
    discovered.state = DiscoveredState.IMPORTED
    if ProcessingStage.IMPORT in (discovered.processing_errors or {}):
        processing_errors_clear(discovered_ids=[discovered.pk], stages=[ProcessingStage.IMPORT])
    entities_ingested_rebuild(entity_ids=[entity.pk])
    return imported


INVALID_ENTITY = "invalid entity"
MAPPING_FAILED = "mapping failed"
NAME_TAKEN = "name taken"


def _failed_mapping(stage: str, failures: list) -> RecordError:
    mapping, exc = failures[0]
    return RecordError(
        stage,
        f"The field mapping {mapping.catalog_path} ← {mapping.expression} failed on this "
        f"repository: {exc}",
        reason=MAPPING_FAILED,
        hint=(
            f"Fix the field mapping for {mapping.catalog_path} (integration settings → "
            "mappings), then sync again."
        ),
    )


def _mapping_for(issue: ValidationIssue, mappings: list) -> str:
    """The catalog path of the field mapping that produced ``issue``'s field (its own path when
    no mapping did: a default of the import)."""
    for mapping in mappings:
        try:
            path = ".".join(catalog_path_parts(mapping.catalog_path))
        except ExpressionError:
            continue
        if (
            issue.path == path
            or issue.path.startswith((f"{path}.", f"{path}["))
            or path.startswith(f"{issue.path}.")  # a label or annotation key
        ):
            return f"{mapping.catalog_path} ← {mapping.expression}"
    return issue.path or "metadata.name"


def refusal_error(stage: str, exc: ImportRefused, mappings: list) -> RecordError:
    """What a person reads about a refused import or refresh, and what to do about it."""
    if exc.reason == INVALID_ENTITY:
        paths = list(dict.fromkeys(_mapping_for(issue, mappings) for issue in exc.issues))
        message = "; ".join(str(issue) for issue in exc.issues) or str(exc)
        return RecordError(
            stage,
            f"The mapped entity is invalid: {message}",
            reason=INVALID_ENTITY,
            hint=(
                f"Fix the field mapping for {', '.join(paths) or 'the field named'} "
                "(integration settings → mappings), then sync again."
            ),
        )
    if exc.reason == NAME_TAKEN:
        holder = exc.holder or "an entity of the same name"
        return RecordError(
            stage,
            f"The catalog already holds {holder}, and the correlation rules do not match it to "
            "this repository.",
            reason=NAME_TAKEN,
            hint=(
                f"Merge the repository into {holder} (Discovered → Import), add a correlation "
                "rule that matches them, or map metadata.name to another name (integration "
                "settings → mappings)."
            ),
        )
    if exc.reason == IMPORTED_ELSEWHERE:
        return RecordError(
            stage,
            str(exc),
            reason=IMPORTED_ELSEWHERE,
            hint=(
                f"imported by integration {exc.holder}; unlink it there first, or narrow this "
                "integration's target (projects, repository pattern) so that it no longer "
                "covers the repository."
            ),
        )
    return RecordError(stage, str(exc), reason=exc.reason)


def _invalid(document: dict, label: str) -> ImportRefused | None:
    issues = validate_entity_document(document)
    if not issues:
        return None
    return ImportRefused(
        f"{label}: the mapped entity is invalid: " + "; ".join(str(issue) for issue in issues),
        reason=INVALID_ENTITY,
        issues=issues,
    )


def discovered_errors_retry(
    *, integration: Integration, errors: RunErrors | None = None, exclude: Iterable[int] = ()
) -> int:
    """Try again what failed for this integration's records in earlier runs: the import of
    records still not imported (auto-import only) and the refresh of linked ones, with the
    mappings and catalog as they are now, so a fixed mapping or a freed name takes effect at
    the next sync even when an incremental listing does not read those repositories again
    (``exclude``: the records this run's pages handled already). Returns how many were
    imported or refreshed."""
    failed = DiscoveredEntity.objects.filter(
        integration=integration, error_since__isnull=False
    ).exclude(pk__in=list(exclude))
    done = 0
    if integration.auto_import:
        rows = list(
            failed.filter(
                state=DiscoveredState.DISCOVERED,
                processing_errors__has_key=ProcessingStage.IMPORT,
            )
            .select_related("integration", "suggested_entity")
            .order_by("pk")
        )
        if rows:
            done += discovered_import_new(integration=integration, rows=rows, errors=errors)
    refresh = list(
        failed.filter(
            state=DiscoveredState.IMPORTED, processing_errors__has_key=ProcessingStage.REFRESH
        ).values_list("pk", flat=True)
    )
    if refresh:
        done += imported_refresh(integration=integration, discovered_ids=refresh, errors=errors)
    return done


@transaction.atomic
def discovered_import_new(
    *,
    integration: Integration,
    rows: list[DiscoveredEntity],
    errors: RunErrors | None = None,
) -> int:
    """Import records a sync has just discovered, each by its recommended action, as
    :func:`discovered_import` would one by one but in a few statements: the registrations are
    written in one upsert and linked in bulk. What the bulk path cannot decide alone (merges, a
    name taken in the catalog or twice in the page) goes through :func:`discovered_import`, in
    page order. Returns how many were imported.

    Nothing is dropped silently: each refusal (an invalid mapped entity, a name the catalog
    holds for another entity) is recorded in ``errors`` on its record, with the field or the
    holder it names and what to do; the records imported (or left, by design, for a person to
    merge) have their import error cleared. Without ``errors`` (an import outside a run, a
    webhook's refresh), they are written at once."""
    own = errors is None
    errors = RunErrors() if errors is None else errors
    behaviour = integration.registration
    mappings = list(integration.field_mappings.all())
    registrations: dict[str, tuple[DiscoveredEntity, dict]] = {}
    one_by_one: list[DiscoveredEntity] = []
    page_duplicates: dict[int, str] = {}  # record → the name an earlier record of the page takes
    done: list[int] = []  # imported, or waiting for a person by the integration's settings

    def refused(row: DiscoveredEntity, exc: ImportRefused) -> None:
        errors.fail(row.pk, row.name, refusal_error(ProcessingStage.IMPORT, exc, mappings))
        logger.info(
            "integrations.sync.auto_import_refused",
            extra={
                "integration_id": integration.pk,
                "discovered": row.name,
                "reason": exc.reason,
                "detail": str(exc),
            },
        )

    elsewhere = repositories_imported_elsewhere(
        integration=integration, external_ids=[row.external_id for row in rows]
    )
    for row in rows:
        if row.external_id in elsewhere:
            refused(row, _imported_elsewhere(row, elsewhere[row.external_id]))
            continue
        if behaviour == Registration.MERGE and row.suggested_entity_id is None:
            done.append(row.pk)  # waits for a user to pick the entity
            continue
        if behaviour != Registration.REGISTER and row.suggested_entity_id:
            one_by_one.append(row)  # a merge
            continue
        failures: list = []
        document = registration_document(
            integration=integration, discovered=row, mappings=mappings, failures=failures
        )
        if failures:
            errors.fail(row.pk, row.name, _failed_mapping(ProcessingStage.IMPORT, failures))
            continue
        if (invalid := _invalid(document, row.name)) is not None:
            refused(row, invalid)
            continue
        metadata = document["metadata"]
        key = ref_key(document["kind"], metadata.get("namespace") or "default", metadata["name"])
        if key in registrations:
            # The first of the page takes the name; this one merges into what the first
            # registers when the rules match it, as a later page's would.
            one_by_one.append(row)
            page_duplicates[row.pk] = key
        else:
            registrations[key] = (row, document)
    existing = Entity.objects.filter(ref_key__in=list(registrations))
    taken = set(existing.values_list("ref_key", flat=True))
    batch = {key: item for key, item in registrations.items() if key not in taken}
    # Names the catalog holds but correlation did not point to: taken before this run looked
    # (or by a concurrent run); a concurrent run's entity is merged into if the rules match it.
    conflicts = {row.pk: key for key, (row, _) in registrations.items() if key in taken}
    conflicts.update(page_duplicates)
    first = [row for key, (row, _) in registrations.items() if key not in batch]
    imported = 0
    if batch:
        # The links and ingested properties are written with the new entities (one write each,
        # not a write and a rewrite); the links' import time is fixed up front to match them.
        imported_at = timezone.now()
        properties = _properties_of(integration)
        uids = {key: uuid.uuid4() for key in batch}
        ingested = {
            key: (
                [_link_item(integration, ImportAction.REGISTER, uids[key], imported_at)],
                properties(row.data),
            )
            for key, (row, _) in batch.items()
        }
        try:
            with transaction.atomic():
                documents = [doc for _, doc in batch.values()]
                result = entities_upsert(
                    documents=documents, scope=integration.scope, ingested=ingested, uids=uids
                )
                entities = result.entities
        except DocumentError:
            first += [row for row, _ in batch.values()]  # one by one names the invalid ones
        except IntegrityError as exc:
            if not name_taken(exc):
                raise
            # A concurrent run took some of the names: one by one finds which.
            first += [row for row, _ in batch.values()]
            conflicts.update({row.pk: key for key, (row, _) in batch.items()})
        else:
            batch_rows = [row for row, _ in batch.values()]
            imported = _link_many(
                integration,
                batch_rows,
                entities,
                ImportAction.REGISTER,
                imported_at=imported_at,
                # An entity created meanwhile was updated, not created: derive its links.
                rebuild=result.created != len(entities),
            )
            done += [row.pk for row in batch_rows]
    ordered = {row.pk: index for index, row in enumerate(rows)}
    for row in sorted(first + one_by_one, key=lambda row: ordered[row.pk]):
        try:
            discovered_import(discovered=row)
        except ImportRefused as exc:
            entity = _correlated_holder(integration, row, conflicts.get(row.pk))
            if entity is None or behaviour == Registration.REGISTER:
                refused(row, exc)
                continue
            try:
                _merge(row, entity, None)
            except ImportRefused as merge_exc:
                refused(row, merge_exc)
                continue
        imported += 1
        done.append(row.pk)
    errors.succeed(done, ProcessingStage.IMPORT)
    if own:
        errors.flush()
    return imported


def _correlated_holder(integration: Integration, row: DiscoveredEntity, key: str | None):
    """The entity holding the name ``key`` when the integration's correlation rules match the
    record to it (as they would have, had it existed when the run built its index)."""
    if key is None:
        return None
    candidates = entities_in_scope(scope=integration.scope).filter(ref_key=key)
    index = correlation_index_for(integration, candidates)
    matches = index.match(row.data)
    return Entity.objects.filter(pk=matches[0]).first() if len(matches) == 1 else None


def _link_many(
    integration: Integration,
    rows: list[DiscoveredEntity],
    entities: list[Entity],
    action: str,
    *,
    imported_at: datetime,
    rebuild: bool,
) -> int:
    """Link new entities to their records at ``imported_at`` (the time their links were written
    with); ``rebuild``: derive the entities' ingested properties again (some were not new)."""
    ImportedEntity.objects.bulk_create(
        [
            ImportedEntity(
                integration=integration,
                discovered=row,
                entity=entity,
                action=action,
                imported_at=imported_at,
            )
            for row, entity in zip(rows, entities, strict=True)
        ],
        batch_size=500,
    )
    DiscoveredEntity.objects.filter(pk__in=[row.pk for row in rows]).update(
        state=DiscoveredState.IMPORTED
    )
    for row in rows:
        row.state = DiscoveredState.IMPORTED
    if rebuild:
        entities_ingested_rebuild(entity_ids=[entity.pk for entity in entities])
    return len(rows)


def discovered_import_many(
    *, integration: Integration, requests: list[ImportRequest], user=None
) -> list[tuple[ImportRequest, ImportedEntity | None, str]]:
    """Bulk import: each request succeeds or fails on its own; (request, result, error)."""
    discovered_by_id = {
        d.pk: d
        for d in DiscoveredEntity.objects.select_related("integration", "suggested_entity").filter(
            integration=integration, pk__in=[r.discovered_id for r in requests]
        )
    }
    entities = Entity.objects.in_bulk([r.entity_id for r in requests if r.entity_id])
    results = []
    for request in requests:
        discovered = discovered_by_id.get(request.discovered_id)
        if discovered is None:
            results.append((request, None, f"No discovered entity {request.discovered_id}"))
            continue
        if request.entity_id and request.entity_id not in entities:
            results.append((request, None, f"No catalog entity {request.entity_id}"))
            continue
        try:
            imported = discovered_import(
                discovered=discovered,
                action=request.action,
                entity=entities.get(request.entity_id) if request.entity_id else None,
                entity_type=request.entity_type,
                user=user,
            )
        except ImportRefused as exc:
            results.append((request, None, str(exc)))
        else:
            results.append((request, imported, ""))
    return results


@transaction.atomic
def imported_unlink(*, imported: ImportedEntity) -> ImportedEntity:
    """Stop syncing into the entity; the entity and everything on it stay."""
    if imported.state == LinkState.UNLINKED:
        return imported
    imported.state = LinkState.UNLINKED
    imported.unlinked_at = timezone.now()
    imported.save(update_fields=["state", "unlinked_at"])
    DiscoveredEntity.objects.filter(pk=imported.discovered_id).exclude(
        state=DiscoveredState.GONE
    ).update(state=DiscoveredState.DISCOVERED)
    entities_ingested_rebuild(entity_ids=[imported.entity_id])
    return imported


def _link_item(integration: Integration, action: str, entity_uid, imported_at: datetime) -> dict:
    """One ``metadata.integration`` item: a linked import of the entity."""
    return {
        "integration_id": integration.pk,
        "integration_name": integration.name,
        "provider": integration.provider,
        "action": action,
        "linked_entity_uid": str(entity_uid),
        "imported_at": imported_at.isoformat().replace("+00:00", "Z"),
    }


def _properties_of(integration: Integration) -> Callable[[dict], dict]:
    """``data`` → the ``integration_properties`` an import of this integration adds."""
    try:
        provider_class = registry.get(integration.provider)
    except registry.UnknownProvider:
        return lambda data: {}
    return lambda data: {provider_class.properties_key: provider_class.properties(data)}


def entities_ingested_rebuild(*, entity_ids: Iterable[int]) -> int:
    """Recompute ``metadata.integration`` and ``integration_properties`` of entities from their
    linked imports — the single place these are derived."""
    entity_ids = list(entity_ids)
    links: dict[int, list[dict]] = defaultdict(list)
    properties: dict[int, dict] = defaultdict(dict)
    rows = (
        ImportedEntity.objects.filter(entity_id__in=entity_ids, state=LinkState.LINKED)
        .select_related("integration", "discovered", "entity")
        .order_by("imported_at", "pk")
    )
    for imported in rows:
        integration = imported.integration
        links[imported.entity_id].append(
            _link_item(integration, imported.action, imported.entity.uid, imported.imported_at)
        )
        properties[imported.entity_id].update(_properties_of(integration)(imported.discovered.data))
    return entities_ingested_write(
        ingested={pk: (links.get(pk, []), properties.get(pk, {})) for pk in entity_ids}
    )


def imported_refresh(
    *,
    integration: Integration,
    discovered_ids: Iterable[int],
    errors: RunErrors | None = None,
) -> int:
    """Refresh linked entities of these discovered records: mapped fields (all of them for a
    Register, only empty ones for a Merge) and ingested properties. Returns entities changed.

    A mapping that makes an entity invalid leaves the entity as it was (nothing stored is
    lost) and is recorded in ``errors`` on its record, naming the field; the refreshes that
    worked clear their record's refresh error (written at once without ``errors``)."""
    own = errors is None
    errors = RunErrors() if errors is None else errors
    discovered_ids = list(discovered_ids)
    if not discovered_ids:
        return 0
    imports = list(
        ImportedEntity.objects.filter(
            integration=integration, discovered_id__in=discovered_ids, state=LinkState.LINKED
        ).select_related("discovered", "entity")
    )
    if not imports:
        return 0
    documents = []
    mappings = list(integration.field_mappings.all())
    refreshed: list[int] = []
    for imported in imports:
        current = source_document(imported.entity)
        updated = copy.deepcopy(current)
        failures: list = []
        _apply_mappings(
            updated,
            integration,
            imported.discovered.data,
            only_if_empty=imported.action == ImportAction.MERGE,
            mappings=mappings,
            failures=failures,
        )
        if failures:  # the entity stays as it was
            error = _failed_mapping(ProcessingStage.REFRESH, failures)
            errors.fail(imported.discovered_id, imported.discovered.name, error)
        elif updated == current:
            refreshed.append(imported.discovered_id)
        elif (invalid := _invalid(updated, imported.discovered.name)) is not None:
            error = refusal_error(ProcessingStage.REFRESH, invalid, mappings)
            errors.fail(imported.discovered_id, imported.discovered.name, error)
        else:
            documents.append(updated)
            refreshed.append(imported.discovered_id)
    changed = 0
    if documents:
        # A document can differ in form only (the upsert finds its columns unchanged): count
        # the entities written.
        try:
            with transaction.atomic():
                changed = entities_upsert(documents=documents).updated
        except DocumentError:
            # Two records linked to one entity refresh it twice: one by one, the last wins.
            for document in documents:
                changed += entities_upsert(documents=[document]).updated
    errors.succeed(refreshed, ProcessingStage.REFRESH)
    if own:
        errors.flush()
    changed += entities_ingested_rebuild(entity_ids=[i.entity_id for i in imports])
    return changed
