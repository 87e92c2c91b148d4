"""Orphans: linked entities whose repository is gone are shown, never deleted.

Backstage marks an entity its location no longer emits with the annotation
``backstage.io/orphan: "true"`` and leaves it in the catalog for a person to delete; Lantern does
the same when a full listing no longer finds a linked entity's repository, and takes the marker
off again when the repository comes back. Only the marker is written: the entity, its links and
ingested properties stay as they were.
"""

from collections.abc import Iterable

from django.db.models import Q

from catalog.models import Entity
from catalog.rendering import source_document
from catalog.services import entities_upsert
from integrations.choices import DiscoveredState, LinkState
from integrations.models import ImportedEntity

ORPHAN_ANNOTATION = "backstage.io/orphan"


def _linked_entities(discovered_ids: list[int]) -> Iterable[Entity]:
    linked = ImportedEntity.objects.filter(
        discovered_id__in=discovered_ids, state=LinkState.LINKED
    ).values("entity_id")
    return Entity.objects.filter(pk__in=linked)


def orphans_mark(*, discovered_ids: Iterable[int]) -> int:
    """Mark the entities linked to these (gone) records as orphans; returns how many changed."""
    documents = []
    for entity in _linked_entities(list(discovered_ids)):
        document = source_document(entity)
        annotations = document.setdefault("metadata", {}).setdefault("annotations", {})
        if annotations.get(ORPHAN_ANNOTATION) != "true":
            annotations[ORPHAN_ANNOTATION] = "true"
            documents.append(document)
    return entities_upsert(documents=documents).updated if documents else 0


def orphans_clear(*, discovered_ids: Iterable[int]) -> int:
    """Take the marker off the entities linked to these records, unless another linked record
    of the same entity is still gone; returns how many changed."""
    entities = list(_linked_entities(list(discovered_ids)))
    still_gone = set(
        ImportedEntity.objects.filter(
            Q(entity__in=entities),
            state=LinkState.LINKED,
            discovered__state=DiscoveredState.GONE,
        ).values_list("entity_id", flat=True)
    )
    documents = []
    for entity in entities:
        if entity.pk in still_gone or ORPHAN_ANNOTATION not in (entity.annotations or {}):
            continue
        document = source_document(entity)
        document["metadata"]["annotations"].pop(ORPHAN_ANNOTATION, None)
        documents.append(document)
    return entities_upsert(documents=documents).updated if documents else 0
