"""The pure parts of write-back: the catalog file Lantern writes for an entity, the diff the
preview shows, and the branch a pull request comes from. No database writes, no network.

The file is the entity as a person would write it in ``catalog-info.yaml``: Lantern's rendering
(:func:`catalog.rendering.source_document`) without what only Lantern or Backstage's own
ingestion knows (``metadata.uid``, ``etag``, ``metadata.integration``,
``integration_properties``, ``relations``, the ``managed-by`` location annotations, which
Backstage sets itself on reading the file). It is checked with Lantern's validator before it is
offered, so a repository is never handed a file its catalog would refuse.
"""

import difflib
import re

from catalog.models import Entity
from catalog.rendering import dump_yaml, source_document
from catalog.validation import validate_or_raise

CATALOG_FILE = "catalog-info.yaml"
BRANCH_PREFIX = "lantern/catalog-info-"
INGESTION_ANNOTATIONS = (
    "backstage.io/managed-by-location",
    "backstage.io/managed-by-origin-location",
)
LANTERN_ONLY = ("uid", "etag", "integration")
MAX_SLUG = 60
_SLUG_RE = re.compile(r"[^a-z0-9._-]+")


def catalog_file_document(entity: Entity) -> dict:
    """The document of :func:`catalog_file_render`, validated (raises
    :class:`catalog.validation.EntityValidationError` naming each bad field)."""
    document = source_document(entity)
    document.pop("relations", None)
    document.pop("integration_properties", None)
    metadata = document["metadata"]
    for key in LANTERN_ONLY:
        metadata.pop(key, None)
    annotations = {
        key: value
        for key, value in (metadata.get("annotations") or {}).items()
        if key not in INGESTION_ANNOTATIONS
    }
    if annotations:
        metadata["annotations"] = annotations
    else:
        metadata.pop("annotations", None)
    validate_or_raise(document)
    return document


def catalog_file_render(entity: Entity) -> str:
    """The ``catalog-info.yaml`` Lantern writes for ``entity``."""
    return dump_yaml(catalog_file_document(entity))


def catalog_file_diff(current: bytes | None, proposed: str, *, path: str = CATALOG_FILE) -> str:
    """A unified diff from the file in the repository (``None``: there is none) to
    ``proposed``; empty when they are the same."""
    before = [] if current is None else current.decode("utf-8", "replace").splitlines(True)
    after = proposed.splitlines(True)
    return "".join(
        difflib.unified_diff(
            before,
            after,
            fromfile="/dev/null" if current is None else f"a/{path}",
            tofile=f"b/{path}",
        )
    )


def writeback_slug(name: str) -> str:
    """A branch-safe slug of an entity (or repository) name: lower case, runs of other
    characters as one ``-``, no leading or trailing punctuation, at most 60 characters."""
    slug = _SLUG_RE.sub("-", name.lower())
    slug = re.sub(r"\.{2,}", ".", slug)[:MAX_SLUG].strip("-._")
    return slug.removesuffix(".lock") or "entity"


def writeback_branch(name: str) -> str:
    """The branch a pull request of write-back comes from: ``lantern/catalog-info-<slug>``."""
    return BRANCH_PREFIX + writeback_slug(name)
