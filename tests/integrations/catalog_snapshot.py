"""The whole catalog an integration produced, as plain data, for comparing two runs row by row:
entities as rendered documents minus uid/etag/timestamps, search rows, relations, discovered rows,
imports, pull requests and commits."""

from catalog.models import Entity, EntitySearch, Relation
from catalog.rendering import entity_document
from integrations.models import Commit, DiscoveredEntity, ImportedEntity, Integration, PullRequest

_VOLATILE_LINK_KEYS = ("integration_id", "linked_entity_uid", "imported_at")
_VOLATILE_SEARCH_KEYS = ("metadata.uid", "metadata.etag", "metadata.integration.")


def snapshot() -> dict:
    refs = dict(Entity.objects.values_list("pk", "ref_key"))
    entities = {}
    for entity in Entity.objects.all():
        document = entity_document(entity, Relation.objects.filter(source_key=entity.ref_key))
        for key in ("uid", "etag"):
            document["metadata"].pop(key)
        for item in document["metadata"].get("integration", []):
            for key in _VOLATILE_LINK_KEYS:
                item.pop(key)
        entities[entity.ref_key] = document
    search = sorted(
        (refs[entity_id], key, value)
        for entity_id, key, value in EntitySearch.objects.values_list("entity_id", "key", "value")
        if not key.startswith(_VOLATILE_SEARCH_KEYS)
    )
    relations = sorted(
        (refs[r.originating_entity_id], r.source_key, r.type, r.target_key)
        for r in Relation.objects.all()
    )
    discovered = {}
    for row in DiscoveredEntity.objects.all():
        discovered[row.external_id] = {
            "name": row.name,
            "data": row.data,
            "kind": row.kind,
            "type": row.type,
            "source_updated_at": row.source_updated_at,
            "state": row.state,
            "recommended_action": row.recommended_action,
            "suggested": refs.get(row.suggested_entity_id),
            "candidates": sorted(refs[c["id"]] for c in row.match_candidates),
            "candidate_refs": sorted(c["ref"] for c in row.match_candidates),
            # When a repository was last swept is wall-clock time, not catalog state.
            "secondary_state": {
                kind: {k: v for k, v in state.items() if k != "swept_at"}
                for kind, state in row.secondary_state.items()
            },
        }
    imports = sorted(
        (i.discovered.external_id, refs[i.entity_id], i.action, i.state)
        for i in ImportedEntity.objects.select_related("discovered")
    )
    pull_requests = sorted(
        (
            pr.discovered.external_id,
            pr.external_id,
            pr.title,
            pr.state,
            pr.author,
            pr.source_branch,
            pr.destination_branch,
            pr.url,
            pr.created_on,
            pr.updated_on,
            repr(pr.data),
        )
        for pr in PullRequest.objects.select_related("discovered")
    )
    commits = sorted(
        (c.discovered.external_id, c.hash, c.message, c.author, c.url, c.date, repr(c.data))
        for c in Commit.objects.select_related("discovered")
    )
    return {
        "entities": entities,
        "search": search,
        "relations": relations,
        "discovered": discovered,
        "imports": imports,
        "pull_requests": pull_requests,
        "commits": commits,
    }


def wipe() -> None:
    Integration.objects.all().delete()
    Entity.objects.all().delete()


def assert_same_catalog(clean: dict, actual: dict) -> None:
    """Compare two :func:`snapshot` results part by part, entity by entity, so a failure names
    what differs."""
    assert actual["entities"].keys() == clean["entities"].keys()
    for key in clean:
        if isinstance(clean[key], dict):
            for item in clean[key]:
                assert actual[key][item] == clean[key][item], (key, item)
        assert actual[key] == clean[key], key
