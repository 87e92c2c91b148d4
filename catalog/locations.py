"""Registered locations: Backstage's locations API, read through whoever owns the URL.

A location is a catalog file the catalog keeps its entities in step with: read when it is
added, again every ``LANTERN_LOCATION_REFRESH_SECONDS`` and on ``POST /refresh``; an entity the
file stops holding is orphaned (``backstage.io/orphan: "true"``), and so are all of them when the
location is deleted (or they are deleted with it, ``LANTERN_LOCATION_ORPHAN_STRATEGY=delete``).

How a ``url`` location is read is not the catalog's to know: a source that owns URLs (the
integrations app, for the Bitbucket workspaces and instances it connects) registers a
:class:`LocationSource` from its ``AppConfig.ready()`` and reads through its own connector,
outbound guard and request budget. A URL no source claims is refused, so a location can never
make Lantern fetch an arbitrary address. A ``file`` location is a path under one of
``LANTERN_LOCATION_FILE_ROOTS``.

Whatever a location yields is parsed with the bounded catalog loader, held to
``LANTERN_LOCATION_MAX_DOCUMENTS`` documents and validated as a whole before anything is
stored: a file that fails is a :class:`LocationError` and changes nothing but the location's
recorded error (and its entities' ``status.items``).
"""

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from catalog.importing import CatalogFileError, parse_documents
from catalog.models import Entity, Location, Scope, ScopeMembership
from catalog.refs import DEFAULT_NAMESPACE, ref_key
from catalog.rendering import source_document
from catalog.services import (
    DocumentError,
    entities_status_write,
    entities_upsert,
    entity_delete,
    processing_error_item,
)
from catalog.validation import validate_entity_document

logger = logging.getLogger(__name__)

MANAGED_BY_LOCATION = "backstage.io/managed-by-location"
MANAGED_BY_ORIGIN_LOCATION = "backstage.io/managed-by-origin-location"
ORPHAN_ANNOTATION = "backstage.io/orphan"
MAX_TARGET_LENGTH = 2000
MAX_LOCATION_BYTES = 4 * 1024 * 1024
# How many invalid documents an error names before it says "and N more".
ERROR_EXAMPLES = 5


class LocationError(Exception):
    """A location that cannot be read or stored, answered as Backstage would (``status``,
    ``name``); ``message`` is safe to show."""

    def __init__(self, message: str, *, status: int = 400, name: str = "InputError"):
        super().__init__(message)
        self.message = message
        self.status = status
        self.name = name


def location_not_found(message: str) -> LocationError:
    return LocationError(message, status=404, name="NotFoundError")


@dataclass(frozen=True)
class LocationContent:
    """A catalog file as a source read it, with the scope its entities belong to and who read
    it (``source``, e.g. ``integration:7``)."""

    data: bytes
    scope_id: int | None = None
    source: str = ""


@dataclass(frozen=True)
class LocationAnalysis:
    """What a source found at a URL for ``analyze-location``: catalog files (``(url,
    content)``) and, for a repository without one, the entities it would create for it."""

    files: list[tuple[str, bytes]] = field(default_factory=list)
    generated: list[dict] = field(default_factory=list)


# Whether the scope of a source's integration (None: of none) is one the person asking may
# read through; a URL owned only by integrations of other scopes is not theirs to read.
ScopeAllowed = Callable[[int | None], bool]


class LocationSource(Protocol):
    """Reads the URLs it owns. Each method answers ``None`` for a URL that is not its own (or
    only of scopes ``allowed`` refuses) and raises :class:`LocationError` for one it owns but
    cannot read (a missing file is a 404)."""

    def read(self, target: str, allowed: ScopeAllowed) -> LocationContent | None: ...

    def analyze(
        self, target: str, catalog_filename: str, allowed: ScopeAllowed
    ) -> LocationAnalysis | None: ...


_sources: list[LocationSource] = []


def location_source_register(source: LocationSource) -> None:
    if source not in _sources:
        _sources.append(source)


def location_source_unregister(source: LocationSource) -> None:
    if source in _sources:
        _sources.remove(source)


# -- reading -----------------------------------------------------------------------------------


def location_target_check(*, type: str, target: str) -> None:
    if type not in Location.Type.values:
        raise LocationError(f"Location type must be 'url' or 'file', got {type!r}")
    if not target or not target.strip():
        raise LocationError("The location target must not be empty")
    if len(target) > MAX_TARGET_LENGTH:
        raise LocationError(f"The location target is longer than {MAX_TARGET_LENGTH} characters")
    if not target.isascii() or not target.isprintable():
        raise LocationError(
            "The location target must be printable ASCII (percent-encode other characters)"
        )
    if type == Location.Type.URL:
        parts = urlsplit(target)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise LocationError(f"A url location needs an http(s) URL, got {target!r}")


def _no_source(target: str) -> LocationError:
    host = urlsplit(target).hostname
    return LocationError(
        f"No integration owns {host}: a url location must name a file in a repository of a "
        "connected Bitbucket workspace or instance"
    )


def scopes_allowed(user) -> ScopeAllowed:
    """Which integrations' scopes ``user`` may read a location through: a superuser (or the
    schedule, ``None``) any; anyone else no scope, and the scopes they belong to and below."""
    if user is None or user.is_superuser:
        return lambda scope_id: True
    paths = []
    if user.is_authenticated:
        paths = list(
            ScopeMembership.objects.filter(user=user).values_list("scope__path", flat=True)
        )

    def allowed(scope_id: int | None) -> bool:
        if scope_id is None:
            return True
        path = Scope.objects.filter(pk=scope_id).values_list("path", flat=True).first() or ""
        return any(path == p or path.startswith(f"{p}/") for p in paths)

    return allowed


def location_read(*, type: str, target: str, user=None) -> LocationContent:
    location_target_check(type=type, target=target)
    if type == Location.Type.FILE:
        return _file_read(target)
    allowed = scopes_allowed(user)
    for source in list(_sources):
        content = source.read(target, allowed)
        if content is not None:
            if len(content.data) > MAX_LOCATION_BYTES:
                raise LocationError(
                    f"{target} is larger than {MAX_LOCATION_BYTES // (1024 * 1024)} MiB"
                )
            return content
    raise _no_source(target)


def _file_read(target: str) -> LocationContent:
    roots = [Path(root).resolve() for root in settings.LANTERN_LOCATION_FILE_ROOTS]
    if not roots:
        raise LocationError(
            "file locations are not enabled here (LANTERN_LOCATION_FILE_ROOTS is empty)",
            status=403,
            name="NotAllowedError",
        )
    path = Path(target).resolve()
    if not any(path.is_relative_to(root) for root in roots):
        raise LocationError(
            f"{target} is not under a folder file locations may read (LANTERN_LOCATION_FILE_ROOTS)",
            status=403,
            name="NotAllowedError",
        )
    if not path.is_file():
        raise location_not_found(f"{target}: no such file")
    if path.stat().st_size > MAX_LOCATION_BYTES:
        raise LocationError(f"{target} is larger than {MAX_LOCATION_BYTES // (1024 * 1024)} MiB")
    return LocationContent(data=path.read_bytes(), source="file")


def location_documents(*, type: str, target: str, data: bytes) -> list[dict]:
    """The entity documents of a catalog file, validated, with the location annotations
    Backstage gives them; a :class:`LocationError` for a file that is not all valid."""
    label = f"{type}:{target}"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LocationError(f"{label} is not UTF-8 text ({exc})") from exc
    limit = settings.LANTERN_LOCATION_MAX_DOCUMENTS
    sources = []
    try:
        for source in parse_documents(text, label):
            if len(sources) >= limit:
                raise LocationError(f"{label} holds more than {limit} entity documents")
            sources.append(source)
    except CatalogFileError as exc:
        raise LocationError(str(exc)) from exc
    not_mappings = [s for s in sources if not isinstance(s.document, dict)]
    if not_mappings:
        raise LocationError(f"{not_mappings[0].label}: an entity document must be a mapping")
    documents = [_annotated(source.document, label) for source in sources]
    labels = [source.label for source in sources]
    problems = _validation_problems(documents, labels)
    if problems:
        raise LocationError("; ".join(problems))
    return documents


def _validation_problems(documents: list[dict], labels: list[str]) -> list[str]:
    problems = []
    seen: set[str] = set()
    invalid = 0
    for document, label in zip(documents, labels, strict=True):
        issues = validate_entity_document(document)
        if not issues:
            metadata = document.get("metadata") or {}
            key = ref_key(document["kind"], metadata.get("namespace") or "", metadata["name"])
            if key in seen:
                issues = [f"duplicate entity {key} in the same file"]
            seen.add(key)
        if issues:
            invalid += 1
            if len(problems) < ERROR_EXAMPLES:
                problems.append(f"{label}: " + "; ".join(str(issue) for issue in issues))
    if invalid > len(problems):
        problems.append(f"and {invalid - len(problems)} more invalid documents")
    return problems


def _annotated(document: dict, location_ref: str) -> dict:
    metadata = document.get("metadata")
    metadata = dict(metadata) if isinstance(metadata, dict) else {}
    annotations = metadata.get("annotations")
    annotations = dict(annotations) if isinstance(annotations, dict) else {}
    annotations[MANAGED_BY_LOCATION] = location_ref
    annotations[MANAGED_BY_ORIGIN_LOCATION] = location_ref
    return {**document, "metadata": {**metadata, "annotations": annotations}}


def location_entity_document(*, type: str, target: str) -> dict:
    """The Location entity Backstage generates for a registered location."""
    probe = Location(type=type, target=target)
    return {
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "Location",
        "metadata": {
            "name": probe.entity_name,
            "namespace": DEFAULT_NAMESPACE,
            "annotations": {
                MANAGED_BY_LOCATION: probe.ref,
                MANAGED_BY_ORIGIN_LOCATION: probe.ref,
            },
        },
        "spec": {"type": type, "target": target},
    }


# -- storing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LocationAdded:
    """``POST /locations``: the location (unsaved in a dry run), the entities a dry run would
    store, and whether the location was registered already."""

    location: Location
    entities: list[dict]
    exists: bool


def location_add(
    *,
    type: str,
    target: str,
    dry_run: bool = False,
    on_conflict: str = "reject",
    user=None,
) -> LocationAdded:
    """Register a location and store its entities, or (``dry_run``) say what it would store.

    A location registered already is a 409 unless ``on_conflict="refresh"``, which reads it
    again. Nothing is stored unless the file is read and every document in it is valid, and no
    entity it holds belongs to something else (another location, an integration, a person)."""
    location_target_check(type=type, target=target)
    existing = Location.objects.filter(type=type, target=target).first()
    if existing is not None and not dry_run:
        if on_conflict != "refresh":
            raise LocationError(
                f"Location {existing.ref} already exists", status=409, name="ConflictError"
            )
        if not scopes_allowed(user)(existing.scope_id):
            raise _no_source(target)
        location_refresh(location=existing, raise_errors=True)
        return LocationAdded(existing, [], True)
    content = location_read(type=type, target=target, user=user)
    documents = [
        location_entity_document(type=type, target=target),
        *location_documents(type=type, target=target, data=content.data),
    ]
    _conflicts_check(documents, existing)
    if dry_run:
        location = existing or Location(id=uuid.uuid4(), type=type, target=target)
        return LocationAdded(location, documents, existing is not None)
    now = timezone.now()
    try:
        with transaction.atomic():
            location = Location.objects.create(
                type=type,
                target=target,
                scope_id=content.scope_id,
                source=content.source,
                refreshed_at=now,
                next_refresh_at=_next_refresh(now),
            )
            _entities_store(location, documents)
    except IntegrityError as exc:  # added by another request meanwhile
        raise LocationError(
            f"Location {type}:{target} already exists", status=409, name="ConflictError"
        ) from exc
    logger.info(
        "catalog.location.added",
        extra={"location_id": str(location.pk), "entities": len(documents)},
    )
    return LocationAdded(location, [], False)


def location_update(*, location: Location, type: str, target: str, user=None) -> Location:
    """Point a location at another target: read it, then store its entities in place of the
    old target's (those the new file no longer holds are orphaned)."""
    location_target_check(type=type, target=target)
    if (type, target) != (location.type, location.target) and (
        Location.objects.filter(type=type, target=target).exclude(pk=location.pk).exists()
    ):
        raise LocationError(
            f"Location {type}:{target} already exists", status=409, name="ConflictError"
        )
    content = location_read(type=type, target=target, user=user)
    documents = [
        location_entity_document(type=type, target=target),
        *location_documents(type=type, target=target, data=content.data),
    ]
    _conflicts_check(documents, location)
    now = timezone.now()
    previous_entity_ref = location.entity_ref
    with transaction.atomic():
        location.type, location.target = type, target
        location.scope_id, location.source = content.scope_id, content.source
        location.refreshed_at, location.next_refresh_at = now, _next_refresh(now)
        location.last_error = {}
        location.save()
        if previous_entity_ref != location.entity_ref:  # the old Location entity goes
            for entity in location.entities.filter(ref_key=previous_entity_ref):
                entity_delete(entity=entity)
        _entities_store(location, documents)
    return location


def location_delete(*, location: Location) -> int:
    """Unregister a location; its Location entity goes, the entities it emitted are orphaned
    (or deleted, ``LANTERN_LOCATION_ORPHAN_STRATEGY=delete``). Returns how many it emitted."""
    with transaction.atomic():
        entities = list(location.entities.all())
        location_entity = [e for e in entities if e.ref_key == location.entity_ref]
        emitted = [e for e in entities if e.ref_key != location.entity_ref]
        for entity in location_entity:
            entity_delete(entity=entity)
        if settings.LANTERN_LOCATION_ORPHAN_STRATEGY == "delete":
            for entity in emitted:
                entity_delete(entity=entity)
        else:
            _entities_orphan(emitted)
        location.delete()
    logger.info(
        "catalog.location.deleted",
        extra={"location_id": str(location.pk), "entities": len(emitted)},
    )
    return len(emitted)


def location_refresh(*, location: Location, raise_errors: bool = False) -> bool:
    """Read the location again and bring its entities in step; a failure is recorded on the
    location and as a processing error in its entities' ``status.items`` (until a refresh
    succeeds), and raised only with ``raise_errors``. True when it succeeded."""
    now = timezone.now()
    try:
        content = location_read(type=location.type, target=location.target)
        documents = [
            location_entity_document(type=location.type, target=location.target),
            *location_documents(type=location.type, target=location.target, data=content.data),
        ]
        _conflicts_check(documents, location)
        with transaction.atomic():
            location.scope_id, location.source = content.scope_id, content.source
            _entities_store(location, documents)
            Location.objects.filter(pk=location.pk).update(
                scope_id=content.scope_id,
                source=content.source,
                refreshed_at=now,
                next_refresh_at=_next_refresh(now),
                last_error={},
            )
    except LocationError as exc:
        error = {"name": exc.name, "message": exc.message, "at": now.isoformat()}
        Location.objects.filter(pk=location.pk).update(
            next_refresh_at=_next_refresh(now), last_error=error
        )
        item = processing_error_item(name=exc.name, message=exc.message)
        entities_status_write(
            statuses={pk: [item] for pk in location.entities.values_list("pk", flat=True)}
        )
        location.last_error = error
        logger.warning(
            "catalog.location.refresh_failed",
            extra={"location_id": str(location.pk), "error": exc.message},
        )
        if raise_errors:
            raise
        return False
    location.last_error = {}
    return True


def locations_due(*, now=None) -> QuerySet[Location]:
    return Location.objects.filter(next_refresh_at__lte=now or timezone.now())


def _next_refresh(now):
    return now + timedelta(seconds=settings.LANTERN_LOCATION_REFRESH_SECONDS)


def _conflicts_check(documents: list[dict], location: Location | None) -> None:
    """A 409 when an entity of the file exists and is not this location's to write: Backstage
    refuses to let one location overwrite another's entity. An orphan this location emitted
    before (its managed-by-location annotation names it) is taken back."""
    keys = {}
    for document in documents:
        metadata = document["metadata"]
        keys[ref_key(document["kind"], metadata.get("namespace") or "", metadata["name"])] = (
            metadata["annotations"][MANAGED_BY_LOCATION]
        )
    for entity in Entity.objects.filter(ref_key__in=list(keys)).only(
        "ref_key", "kind", "namespace", "name", "location", "annotations"
    ):
        if location is not None and entity.location_id == location.pk:
            continue
        owner = (entity.annotations or {}).get(MANAGED_BY_LOCATION)
        if entity.location_id is None and owner == keys[entity.ref_key]:
            continue
        raise LocationError(
            f"Entity {entity.ref} already exists and is not this location's (another location, "
            "an integration or a person holds it): remove it or rename the entity in the file",
            status=409,
            name="ConflictError",
        )


def _entities_store(location: Location, documents: list[dict]) -> None:
    scope = Scope.objects.get(pk=location.scope_id) if location.scope_id else None
    try:
        result = entities_upsert(documents=documents, scope=scope)
    except DocumentError as exc:  # validated already; a rename race at most
        raise LocationError(str(exc)) from exc
    ids = [entity.pk for entity in result.entities]
    # Only what changes is written: an update advances the catalog generation (and so drops
    # every cached count), and most refreshes change nothing.
    unlinked = Entity.objects.filter(pk__in=ids).exclude(location=location)
    if unlinked_ids := list(unlinked.values_list("pk", flat=True)):
        Entity.objects.filter(pk__in=unlinked_ids).update(location=location)
    entities_status_write(statuses={pk: [] for pk in ids})
    _entities_orphan(list(Entity.objects.filter(location=location).exclude(pk__in=ids)))


def _entities_orphan(entities: list[Entity]) -> None:
    """Mark entities no location emits any more as orphans, and let go of them."""
    if not entities:
        return
    documents = []
    for entity in entities:
        document = source_document(entity)
        document["metadata"].setdefault("annotations", {})[ORPHAN_ANNOTATION] = "true"
        documents.append(document)
    entities_upsert(documents=documents)
    Entity.objects.filter(pk__in=[e.pk for e in entities]).update(location=None)


# -- analysing ---------------------------------------------------------------------------------


def location_analyze(*, type: str, target: str, catalog_filename: str = "", user=None) -> dict:
    """``POST /analyze-location``: the entities a catalog file at ``target`` holds (and whether
    each is registered already), or, for a repository without one, the entity Lantern would
    create for it. Nothing is stored."""
    location_target_check(type=type, target=target)
    if type == Location.Type.FILE:
        content = location_read(type=type, target=target, user=user)
        analysis = LocationAnalysis(files=[(target, content.data)])
    else:
        analysis = None
        allowed = scopes_allowed(user)
        for source in list(_sources):
            analysis = source.analyze(target, catalog_filename or "catalog-info.yaml", allowed)
            if analysis is not None:
                break
        if analysis is None:
            raise _no_source(target)
    existing = []
    for file_target, data in analysis.files:
        documents = location_documents(type=type, target=file_target, data=data)
        registered = Location.objects.filter(type=type, target=file_target).exists()
        existing += [
            {
                "location": {"type": type, "target": file_target},
                "isRegistered": registered,
                "entity": document,
            }
            for document in documents
        ]
    generated = [
        {"entity": document, "fields": _generated_fields(document)}
        for document in analysis.generated
    ]
    return {"existingEntityFiles": existing, "generateEntities": generated}


def _generated_fields(document: dict) -> list[dict]:
    """The fields of a generated entity a person should confirm, as Backstage's analyzer
    describes them."""
    spec = document.get("spec") or {}
    owner = spec.get("owner") if spec.get("owner") != "unknown" else None
    fields = []
    for path, value, what in (
        ("spec.owner", owner, "the owning group or user"),
        ("spec.type", spec.get("type"), "the component type"),
        ("spec.lifecycle", spec.get("lifecycle"), "the lifecycle stage"),
    ):
        fields.append(
            {
                "field": path,
                "state": "analysisSuggestedValue" if value else "needsUserInput",
                "value": value or None,
                "description": f"Lantern's suggestion for {what}" if value else f"Enter {what}",
            }
        )
    return fields


def location_of_entity(*, queryset: QuerySet[Location], entity: Entity) -> Location | None:
    """The registered location that emits ``entity``, as ``GET /locations/by-entity`` answers
    it."""
    if entity.location_id is None:
        return None
    return queryset.filter(pk=entity.location_id).first()


# -- querying ----------------------------------------------------------------------------------

LOCATION_FIELDS = ("id", "type", "target")
_LOGICAL = ("$all", "$any", "$not")
_PRIMITIVES = (str, int, float, bool)


def locations_predicate_q(predicate) -> Q:
    """A filter predicate over locations (``POST /locations/by-query``) as a query: the
    grammar of entity predicates on the fields ``id``, ``type`` and ``target``, values compared
    case-insensitively; ``$contains`` (no location field is a list) and anything outside the
    grammar is a :class:`LocationError`."""
    if not isinstance(predicate, dict):
        raise LocationError(f"A location predicate must be an object, got {predicate!r}")
    logical = [key for key in predicate if key in _LOGICAL]
    if logical:
        if len(predicate) != 1:
            raise LocationError(f"{logical[0]} must be the only key of its object")
        operator, operand = next(iter(predicate.items()))
        if operator == "$not":
            return ~locations_predicate_q(operand)
        if not isinstance(operand, list):
            raise LocationError(f"{operator} expects an array")
        parts = [locations_predicate_q(item) for item in operand]
        if operator == "$all":
            return _combine(parts, Q.__and__, Q())
        return _combine(parts, Q.__or__, Q(pk__in=[]))
    q = Q()
    for key, value in predicate.items():
        q &= _location_field_q(key, value)
    return q


def _combine(parts: list[Q], op, empty: Q) -> Q:
    if not parts:
        return empty
    result = parts[0]
    for part in parts[1:]:
        result = op(result, part)
    return result


def _location_field_q(key: str, value) -> Q:
    if key.startswith("$"):
        raise LocationError(f"Unknown predicate operator {key}")
    if key not in LOCATION_FIELDS:
        raise LocationError(
            f"Locations have no field {key!r}; query on {', '.join(LOCATION_FIELDS)}"
        )
    if isinstance(value, _PRIMITIVES):
        return _location_equals_q(key, value)
    if not isinstance(value, dict) or len(value) != 1:
        raise LocationError(f"Invalid filter predicate value for field {key}: {value!r}")
    operator, operand = next(iter(value.items()))
    if operator == "$exists" and isinstance(operand, bool):
        return Q() if operand else Q(pk__in=[])
    if (
        operator == "$in"
        and isinstance(operand, list)
        and all(isinstance(item, _PRIMITIVES) for item in operand)
    ):
        return _combine([_location_equals_q(key, item) for item in operand], Q.__or__, Q(pk__in=[]))
    if operator == "$hasPrefix" and isinstance(operand, str) and key != "id":
        return Q(**{f"{key}__istartswith": operand})
    raise LocationError(f"Invalid filter predicate value for field {key}: {value!r}")


def _location_equals_q(key: str, value) -> Q:
    if isinstance(value, bool):  # Backstage compares booleans only with booleans
        return Q(pk__in=[])
    if key == "id":
        try:
            return Q(pk=uuid.UUID(str(value)))
        except ValueError:
            return Q(pk__in=[])
    return Q(**{f"{key}__iexact": str(value)})
