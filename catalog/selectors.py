"""Reads of the catalog: visible entities, documents for a page, facets."""

from collections import defaultdict
from collections.abc import Iterable, Sequence

from django.db.models import Count, Q, QuerySet

from catalog.models import Entity, EntitySearch, Relation, ScopeMembership
from catalog.query import relation_type_q
from catalog.refs import EntityRefError, parse_entity_ref, ref_key
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


def entity_documents(entities: Sequence[Entity], *, fields: list[str] | None = None) -> list[dict]:
    """Documents (with relations) for a page of entities in two queries whatever its size."""
    relations_by_source: dict[str, list[Relation]] = defaultdict(list)
    if entities and (not fields or any(f.split(".")[0] == "relations" for f in fields)):
        for relation in Relation.objects.filter(source_key__in=[e.ref_key for e in entities]):
            relations_by_source[relation.source_key].append(relation)
    return [
        project_fields(entity_document(e, relations_by_source.get(e.ref_key, [])), fields)
        for e in entities
    ]


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
