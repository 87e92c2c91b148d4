"""Flattening an entity document into search rows, following Backstage's ``buildEntitySearch``.

Keys are dotted paths, values scalars; both lower-cased. A list of strings yields one row per item
under the list's key *and* a ``<key>.<item> = true`` row, so "has tag a and tag b" is expressible.
Relation filters (``relations.<type>=<ref>``) are answered from the relation table itself, so
writing one entity never has to rewrite the search rows of the entities it points at.
"""

from typing import Any

MAX_KEY_LENGTH = 200
MAX_VALUE_LENGTH = 200
# Indexed explicitly below (or not at all), not by traversal.
_SPECIAL_KEYS = {
    "attachments",
    "relations",
    "status",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "metadata.etag",
}


def _original(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _traverse(root: dict) -> list[tuple[str, Any]]:
    output: list[tuple[str, Any]] = []
    seen_item_keys: set[str] = set()

    def visit(path: str, current: Any) -> None:
        if path in _SPECIAL_KEYS:
            return
        if current is None or isinstance(current, str | int | float | bool):
            output.append((path, current))
            return
        if isinstance(current, list):
            for item in current:
                visit(path, item)
                if isinstance(item, str):
                    item_key = f"{path}.{item}".lower()
                    if item_key not in seen_item_keys:
                        seen_item_keys.add(item_key)
                        output.append((f"{path}.{item}", True))
            return
        if isinstance(current, dict):
            for key, value in current.items():
                visit(f"{path}.{key}" if path else str(key), value)

    visit("", root)
    return output


def search_rows(document: dict) -> list[tuple[str, str | None, str | None]]:
    """(key, value, original value) for one entity document, deduplicated and length-capped.

    ``value`` is lower-cased for matching; ``original_value`` keeps the case for facets.
    """
    metadata = document.get("metadata", {})
    pairs = _traverse({k: v for k, v in document.items() if k != "relations"})
    pairs.append(("metadata.name", metadata.get("name")))
    pairs.append(("metadata.namespace", metadata.get("namespace", "default")))
    pairs.append(("metadata.uid", metadata.get("uid")))
    rows: dict[tuple[str, str | None], str | None] = {}
    for key, value in pairs:
        key = key.lower()
        if len(key) > MAX_KEY_LENGTH:
            continue
        original = _original(value)
        lowered = original.lower() if original is not None else None
        if lowered is not None and max(len(original), len(lowered)) > MAX_VALUE_LENGTH:
            original = lowered = None  # too long to index: still answers "exists" filters
        rows.setdefault((key, lowered), original)
    return [(key, value, original) for (key, value), original in rows.items()]
