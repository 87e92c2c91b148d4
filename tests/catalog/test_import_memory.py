"""Importing streams: the documents are read twice (validated, then written in batches), never
held all at once. What still grows with their number is a few hundred bytes per entity: its ref
(the first pass checks that refs are unique) and the catalog's notice of the written entities,
delivered to subscribers when the transaction commits. A parsed document held in memory costs
several kilobytes, so the bound below fails an import that keeps them."""

import tracemalloc

import pytest

from catalog.models import Entity
from catalog.services import entities_import

pytestmark = pytest.mark.django_db


def _documents(count: int):
    for index in range(count):
        document = {
            "apiVersion": "backstage.io/v1alpha1",
            "kind": "Component",
            "metadata": {
                "name": f"svc-{index:06d}",
                "description": f"Service number {index}, with some text to carry. " * 3,
                "tags": ["python", f"team-{index % 50}"],
                "annotations": {"example.com/id": str(index)},
            },
            "spec": {"type": "service", "owner": f"team-{index % 50}", "lifecycle": "production"},
        }
        yield document, f"document {index + 1}"


def _peak_import(count: int) -> int:
    tracemalloc.start()
    try:
        result = entities_import(sources=lambda: _documents(count))
        assert result.created == count
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


PER_ENTITY_BYTES = 600


def test_import_memory_grows_by_refs_not_documents():
    small_peak = _peak_import(1_000)
    Entity.objects.all().delete()
    large_peak = _peak_import(10_000)
    assert Entity.objects.count() == 10_000
    assert large_peak - small_peak < 9_000 * PER_ENTITY_BYTES, (small_peak, large_peak)
