"""Reads of the catalog: visible entities, documents for a page, facets."""

import hashlib
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from django.conf import settings
from django.core.cache import caches
from django.db import connection
from django.db.models import Count, Q, QuerySet

from catalog.models import Entity, EntitySearch, Relation, ScopeMembership
from catalog.query import relation_type_q
from catalog.refs import DEFAULT_NAMESPACE, EntityRefError, parse_entity_ref, ref_key
from catalog.rendering import entity_document, project_fields


def scope_visibility_q(user, field: str = "scope") -> Q | None:
    """Who sees what: superusers everything; everyone else objects without a scope and those in
    (or below) the scopes they belong to. ``None`` means no restriction."""
    if user is not None and user.is_authenticated and user.is_superuser:
        return None
    q = Q(**{f"{field}__isnull": True})
    if user is None or not user.is_authenticated:
        return q
    paths = ScopeMembership.objects.filter(user=user).values_list("scope__path", flat=True)
    for path in paths:
        q |= Q(**{f"{field}__path": path}) | Q(**{f"{field}__path__startswith": f"{path}/"})
    return q


def entities_in_scope(*, scope) -> QuerySet[Entity]:
    """Entities an object of ``scope`` may touch: those of the scope, below it, or unscoped."""
    if scope is None:
        return Entity.objects.all()
    return Entity.objects.filter(
        Q(scope__isnull=True)
        | Q(scope__path=scope.path)
        | Q(scope__path__startswith=f"{scope.path}/")
    )


def entities_visible(*, user) -> QuerySet[Entity]:
    """Entities the user may read (see :func:`scope_visibility_q`)."""
    q = scope_visibility_q(user)
    return Entity.objects.all() if q is None else Entity.objects.filter(q)


def entity_by_ref(*, queryset: QuerySet[Entity], kind: str, namespace: str, name: str):
    return queryset.filter(ref_key=ref_key(kind, namespace, name)).first()


T = TypeVar("T")


def catalog_generation() -> int | None:
    """The catalog's write counter (migration 0007), or ``None`` when answers must not be cached:
    on databases other than PostgreSQL, and inside a transaction, which may see its own
    uncommitted writes (and roll them back after the sequence has moved on)."""
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT last_value FROM catalog_generation")
        return cursor.fetchone()[0]


def cached_per_generation(label: str, queryset: QuerySet, compute: Callable[[], T], *key) -> T:
    """``compute()`` over ``queryset``, cached until the catalog next changes.

    The key is the generation, the queryset's exact SQL and parameters (filters and the reader's
    visibility included) and ``key``; any write to the catalog advances the generation, so a
    cached answer is never reused after a committed change. A reader that computes while a
    writer's transaction is still open may store what it saw under the writer's generation:
    ``LANTERN_CATALOG_CACHE_SECONDS`` bounds how long such an answer can live.
    """
    generation = catalog_generation()
    if generation is None:
        return compute()
    sql, params = queryset.query.sql_with_params()
    material = json.dumps([label, generation, sql, params, key], default=str)
    cache_key = f"catalog.{label}.{hashlib.sha256(material.encode()).hexdigest()}"
    cache = caches["catalog"]
    value = cache.get(cache_key)
    if value is None:
        value = compute()
        cache.set(cache_key, value, settings.LANTERN_CATALOG_CACHE_SECONDS)
    return value


def entity_spec_types(*, queryset: QuerySet[Entity]) -> list[str]:
    """The ``spec.type`` values among these entities, for forms that offer them as choices
    (pass the user's visible entities: a type can tell of another scope)."""
    return list(
        queryset.exclude(spec_type="")
        .order_by("spec_type")
        .values_list("spec_type", flat=True)
        .distinct()
    )


def entities_count(queryset: QuerySet[Entity]) -> int:
    """An exact count of the filtered entities (``totalItems``), cached per generation."""
    return cached_per_generation("count", queryset, queryset.count)


@dataclass(frozen=True)
class DocumentSection:
    """A Lantern-only top-level section of entity documents that another app computes (the
    scorecards app's ``scorecards`` and ``metrics``); catalog never imports the apps that
    supply them, so they register from their ``AppConfig.ready()``.

    ``fetch`` answers a whole batch of entities in one query — entity id → the section's value,
    entities without one left out (their documents have no such key) — so a page never costs a
    query per entity. ``schema`` returns the DRF field describing the value in the OpenAPI
    schema. Like ``integration_properties``, a section is derived data: :func:`source_document`
    (export, write-back) never renders one and importing a document ignores it.
    """

    key: str
    fetch: Callable[[Sequence[Entity]], dict[int, Any]]
    schema: Callable[[], Any]


ENVELOPE_KEYS = ("apiVersion", "kind", "metadata", "spec", "relations", "integration_properties")
_document_sections: dict[str, DocumentSection] = {}


def document_section_register(section: DocumentSection) -> None:
    """Add a section to entity documents; a key the envelope or another section uses is
    refused."""
    if section.key in ENVELOPE_KEYS or section.key in _document_sections:
        raise ValueError(f"entity documents already have a {section.key!r} section")
    _document_sections[section.key] = section


def document_sections() -> list[DocumentSection]:
    return list(_document_sections.values())


def _sections_wanted(fields: list[str] | None, sections: bool) -> list[DocumentSection]:
    """With ``fields``, the sections they name; without, all of them if ``sections``."""
    if fields:
        roots = {f.split(".")[0] for f in fields}
        return [section for section in document_sections() if section.key in roots]
    return document_sections() if sections else []


def entity_documents(
    entities: Sequence[Entity], *, fields: list[str] | None = None, sections: bool = False
) -> list[dict]:
    """Documents (with relations) for a page of entities in two queries whatever its size, plus
    one per registered section included: all of them with ``sections`` (single-entity reads),
    otherwise only those ``fields`` names."""
    relations_by_source: dict[str, list[Relation]] = defaultdict(list)
    if entities and (not fields or any(f.split(".")[0] == "relations" for f in fields)):
        # Plain rows, not model instances: they are only read, and a page has hundreds of them.
        rows = Relation.objects.filter(source_key__in=[e.ref_key for e in entities]).values_list(
            "source_key", "type", "target_ref", "target_key", named=True
        )
        for relation in rows:
            relations_by_source[relation.source_key].append(relation)
    documents = [entity_document(e, relations_by_source.get(e.ref_key, [])) for e in entities]
    for section in _sections_wanted(fields, sections) if entities else []:
        values = section.fetch(entities)
        for entity, document in zip(entities, documents, strict=True):
            if entity.pk in values:
                document[section.key] = values[entity.pk]
    return [project_fields(document, fields) for document in documents]


def entities_by_refs(*, queryset: QuerySet[Entity], refs: Iterable[str]) -> list[Entity | None]:
    """Entities for refs in request order, ``None`` where a ref is missing or malformed."""
    keys: list[str | None] = []
    for raw in refs:
        try:
            keys.append(parse_entity_ref(raw).key)
        except EntityRefError:
            keys.append(None)
    found = {e.ref_key: e for e in queryset.filter(ref_key__in=[k for k in keys if k])}
    return [found.get(key) if key else None for key in keys]


def entity_facets(*, queryset: QuerySet[Entity], facets: list[str]) -> dict[str, list[dict]]:
    """Value counts per facet over the filtered entities, cached per generation."""
    return cached_per_generation(
        "facets", queryset, lambda: _entity_facets(queryset, facets), facets
    )


def _entity_facets(queryset: QuerySet[Entity], facets: list[str]) -> dict[str, list[dict]]:
    """Value counts per facet over the filtered entities, answered from the search table."""
    result = {}
    ids = queryset.values("pk")
    for facet in facets:
        key = facet.strip().lower()
        if key.startswith("relations."):
            relation_type = key.removeprefix("relations.")
            rows = Relation.objects.filter(
                relation_type_q(relation_type),
                source_key__in=queryset.values("ref_key"),
            )
            counted = rows.values("target_ref").annotate(count=Count("source_key", distinct=True))
            items = [{"value": r["target_ref"], "count": r["count"]} for r in counted]
        else:
            rows = EntitySearch.objects.filter(key=key, entity_id__in=ids).exclude(
                original_value=None
            )
            counted = rows.values("original_value").annotate(
                count=Count("entity_id", distinct=True)
            )
            items = [{"value": r["original_value"], "count": r["count"]} for r in counted]
        items.sort(key=lambda item: (-item["count"], str(item["value"])))
        result[facet] = items
    return result


def user_ownership_refs(*, user, queryset: QuerySet[Entity]) -> list[str]:
    """The owner refs that make an entity the user's (``ownedByCurrentUser``): their User
    entity's ref, ``user:default/<username>`` (how Backstage's usual sign-in resolver names
    it), and, when the catalog holds that entity, the groups it is a member of."""
    user_key = ref_key("User", DEFAULT_NAMESPACE, user.get_username())
    refs = [user_key]
    if queryset.filter(ref_key=user_key).exists():
        groups = Relation.objects.filter(source_key=user_key, type="memberOf")
        refs += sorted(set(groups.values_list("target_key", flat=True)))
    return refs
