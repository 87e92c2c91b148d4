"""The one renderer of entity documents (Backstage envelope), and field projection."""

from collections.abc import Iterable
from typing import Any

import yaml

from catalog.models import Entity, Relation
from catalog.refs import parse_entity_ref


def relation_dicts(relations: Iterable[Relation]) -> list[dict]:
    """Relation rows of one entity as document items, deduplicated and in a stable order."""
    seen: set[tuple[str, str]] = set()
    items = []
    for relation in sorted(relations, key=lambda r: (r.type, r.target_key)):
        identity = (relation.type, relation.target_key)
        if identity in seen:
            continue
        seen.add(identity)
        target = parse_entity_ref(relation.target_ref)
        items.append(
            {
                "type": relation.type,
                "targetRef": relation.target_ref,
                "target": {"kind": target.kind, "namespace": target.namespace, "name": target.name},
            }
        )
    return items


def entity_document(entity: Entity, relations: Iterable[Relation] | None = None) -> dict:
    """The full document of an entity. ``relations``: its rows (``source_key`` = its ref key)."""
    metadata: dict[str, Any] = {
        "namespace": entity.namespace,
        "name": entity.name,
        "uid": str(entity.uid),
        "etag": entity.etag,
    }
    if entity.title:
        metadata["title"] = entity.title
    if entity.description:
        metadata["description"] = entity.description
    for field in ("labels", "annotations", "tags", "links"):
        value = getattr(entity, field)
        if value:
            metadata[field] = value
    for key, value in (entity.metadata_extra or {}).items():
        metadata.setdefault(key, value)
    if entity.integration_links:
        metadata["integration"] = entity.integration_links
    document: dict[str, Any] = {
        "apiVersion": entity.api_version,
        "kind": entity.kind,
        "metadata": metadata,
        "spec": entity.spec or {},
    }
    if relations is not None:
        document["relations"] = relation_dicts(relations)
    if entity.integration_properties:
        document["integration_properties"] = entity.integration_properties
    if entity.status_items:
        document["status"] = {"items": entity.status_items}
    return document


def source_document(entity: Entity) -> dict:
    """The document as a user would write it in catalog-info.yaml (for export and round trips)."""
    document = entity_document(entity)
    for generated in ("uid", "etag", "integration"):
        document["metadata"].pop(generated, None)
    document.pop("integration_properties", None)
    document.pop("status", None)
    if document["metadata"]["namespace"] == "default":
        document["metadata"].pop("namespace")
    return document


_MISSING = object()


def _get_path(document: dict, parts: list[str]) -> Any:
    current: Any = document
    for part in parts:
        if not isinstance(current, dict) or part not in current:
            return _MISSING
        current = current[part]
    return current


def project_fields(document: dict, fields: list[str] | None) -> dict:
    """Keep only the given dotted paths, as Backstage's ``fields`` parameter does."""
    if not fields:
        return document
    output: dict = {}
    for field in fields:
        parts = field.split(".")
        value = _get_path(document, parts)
        if value is _MISSING:
            continue
        target = output
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = value
    return output


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):
    """Block style, keys in document order, multi-line strings as literal blocks; libyaml's
    emitter when PyYAML has it (several times faster than the pure-Python one)."""


def _represent_str(dumper: yaml.SafeDumper, value: str):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def dump_yaml(data: dict | list) -> str:
    """One document, or a stream of documents for a list."""
    options = {"Dumper": _Dumper, "sort_keys": False, "allow_unicode": True}
    if isinstance(data, list):
        return yaml.dump_all(data, explicit_start=True, **options)
    return yaml.dump(data, **options)
