"""Fixtures for the catalog core tests: entity documents, catalog files and catalog snapshots."""

import io
from pathlib import Path

import pytest
from django.core.management import call_command

import catalog
from catalog.models import Entity, EntitySearch, Relation

DEMO_CATALOG = Path(catalog.__file__).parent / "fixtures" / "demo-catalog.yaml"

# The smallest spec each built-in kind accepts.
MINIMAL_SPECS: dict[str, dict] = {
    "Component": {"type": "service", "lifecycle": "production", "owner": "team-a"},
    "API": {
        "type": "openapi",
        "lifecycle": "production",
        "owner": "team-a",
        "definition": "openapi: 3.0.0",
    },
    "System": {"owner": "team-a"},
    "Domain": {"owner": "team-a"},
    "Resource": {"type": "database", "owner": "team-a"},
    "Group": {"type": "team", "children": []},
    "User": {"memberOf": []},
    "Location": {"type": "url", "target": "https://example.com/catalog-info.yaml"},
}


def entity_document(kind: str, name: str, *, spec: dict | None = None, **metadata) -> dict:
    """A valid document of ``kind``; ``spec`` is merged over the kind's minimal spec."""
    merged_spec = dict(MINIMAL_SPECS.get(kind, {}))
    merged_spec.update(spec or {})
    return {
        "apiVersion": "backstage.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, **metadata},
        "spec": merged_spec,
    }


@pytest.fixture
def make_document():
    """``make_document(kind, name, spec={...}, **metadata)``: a valid entity document."""
    return entity_document


@pytest.fixture
def write_file(tmp_path):
    """``write_file("dir/name.yaml", text)``: a file under a temporary directory."""

    def write(relative: str, text: str) -> Path:
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture
def import_catalog(db):
    """Run ``import_catalog`` on paths; returns what it wrote to stdout."""

    def run(*paths) -> str:
        stdout = io.StringIO()
        call_command(
            "import_catalog", *[str(p) for p in paths], stdout=stdout, stderr=io.StringIO()
        )
        return stdout.getvalue()

    return run


@pytest.fixture
def export_catalog(db):
    """Run ``export_catalog`` (extra arguments passed on); returns its stdout."""

    def run(*args) -> str:
        stdout = io.StringIO()
        call_command("export_catalog", *args, stdout=stdout, stderr=io.StringIO())
        return stdout.getvalue()

    return run


@pytest.fixture
def demo_catalog(import_catalog):
    """The demo fixture imported through the import command."""
    import_catalog(DEMO_CATALOG)
    return DEMO_CATALOG


def snapshot() -> dict:
    """Everything the catalog stores, by content (not by row id), for before/after comparisons."""
    refs = dict(Entity.objects.values_list("pk", "ref_key"))
    entities = {
        e.ref_key: {
            "uid": e.uid,
            "etag": e.etag,
            "updated_at": e.updated_at,
            "columns": (e.api_version, e.kind, e.namespace, e.name, e.title, e.description),
            "json": (e.tags, e.labels, e.annotations, e.links, e.spec),
        }
        for e in Entity.objects.all()
    }
    relations = sorted(
        (refs[r.originating_entity_id], r.source_key, r.type, r.target_ref, r.target_key)
        for r in Relation.objects.all()
    )
    search = sorted(
        ((refs[s.entity_id], s.key, s.value, s.original_value) for s in EntitySearch.objects.all()),
        key=repr,
    )
    return {"entities": entities, "relations": relations, "search": search}


@pytest.fixture
def catalog_snapshot(db):
    """``catalog_snapshot()``: the whole stored catalog by content."""
    return snapshot
