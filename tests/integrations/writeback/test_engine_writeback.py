"""The pure parts of write-back: the catalog file rendered for an entity (the Backstage envelope
without Lantern's own sections, valid by Lantern's validator, parsing back to the same entity),
the preview's diff, and the branch name; and the file written to a Cloud repository re-imports
to the same entity."""

import pytest
import yaml

from catalog.models import Entity
from catalog.services import entities_upsert
from catalog.validation import EntityValidationError, validate_entity_document
from integrations.engine.writeback import (
    catalog_file_diff,
    catalog_file_document,
    catalog_file_render,
    writeback_branch,
    writeback_slug,
)
from integrations.providers.writes import FileChange, WriteRequest, blob_id
from tests.integrations.writeback.conftest import cloud_provider

pytestmark = pytest.mark.django_db

DOCUMENT = {
    "apiVersion": "backstage.io/v1alpha1",
    "kind": "Component",
    "metadata": {
        "name": "payments-api",
        "title": "Payments API",
        "description": "Takes payments.\nAnd refunds them.",
        "tags": ["python", "payments"],
        "labels": {"bitbucket.org/project": "PAY"},
        "annotations": {
            "bitbucket.org/repo-url": "https://bitbucket.org/acme/payments-api",
            "backstage.io/managed-by-location": "url:https://bitbucket.org/acme/x",
            "backstage.io/managed-by-origin-location": "url:https://bitbucket.org/acme/x",
        },
        "links": [{"url": "https://pay.example.com", "title": "Docs"}],
    },
    "spec": {"type": "service", "lifecycle": "production", "owner": "team-pay", "system": "money"},
}


def _entity(document: dict = DOCUMENT) -> Entity:
    entity = entities_upsert(documents=[document]).entities[0]
    Entity.objects.filter(pk=entity.pk).update(
        integration_links=[{"integration_id": 1, "action": "REGISTER"}],
        integration_properties={"BitbucketCloud": {"name": "payments-api"}},
    )
    return Entity.objects.get(pk=entity.pk)


def test_the_file_is_the_envelope_without_lantern_only_sections_and_validates():
    entity = _entity()
    text = catalog_file_render(entity)
    parsed = yaml.safe_load(text)
    assert validate_entity_document(parsed) == []
    assert set(parsed) == {"apiVersion", "kind", "metadata", "spec"}
    metadata = parsed["metadata"]
    for gone in ("uid", "etag", "integration", "namespace"):
        assert gone not in metadata
    assert "integration_properties" not in text and "relations" not in text
    assert str(entity.uid) not in text
    assert metadata["annotations"] == {
        "bitbucket.org/repo-url": "https://bitbucket.org/acme/payments-api"
    }
    expected = {**DOCUMENT["metadata"], "annotations": metadata["annotations"]}
    assert metadata == expected and parsed["spec"] == DOCUMENT["spec"]
    assert "description: |" in text  # multi-line text stays readable


def test_an_entity_that_would_not_validate_is_refused_naming_the_field():
    entity = _entity()
    entity.spec = {"type": "service", "lifecycle": "production"}
    with pytest.raises(EntityValidationError) as refused:
        catalog_file_document(entity)
    assert "spec.owner" in str(refused.value)


def test_the_preview_diff_against_no_file_and_against_a_file():
    proposed = "kind: Component\nmetadata:\n  name: a\n"
    created = catalog_file_diff(None, proposed)
    assert created.startswith("--- /dev/null\n+++ b/catalog-info.yaml\n")
    assert "+kind: Component\n" in created
    changed = catalog_file_diff(b"kind: Component\nmetadata:\n  name: b\n", proposed)
    assert "--- a/catalog-info.yaml" in changed
    assert "-  name: b\n" in changed and "+  name: a\n" in changed
    assert catalog_file_diff(proposed.encode(), proposed) == ""


@pytest.mark.parametrize(
    ("name", "branch"),
    [
        ("payments-api", "lantern/catalog-info-payments-api"),
        ("Payments API (v2)", "lantern/catalog-info-payments-api-v2"),
        ("..weird..name.lock", "lantern/catalog-info-weird.name"),
        ("日本", "lantern/catalog-info-entity"),
        ("x" * 100, "lantern/catalog-info-" + "x" * 60),
    ],
)
def test_branch_names_are_safe_slugs(name, branch):
    assert writeback_branch(name) == branch
    assert writeback_slug(writeback_slug(name)) == writeback_slug(name)


def test_the_written_file_reimports_to_the_same_entity(cloud):
    """Of an entity as a repository would declare it (no ingestion annotations, which
    Backstage sets itself on reading the file), the file upserts as unchanged."""
    annotations = {"bitbucket.org/repo-url": "https://bitbucket.org/acme/payments-api"}
    metadata = {**DOCUMENT["metadata"], "annotations": annotations}
    entity = _entity({**DOCUMENT, "metadata": metadata})
    provider = cloud_provider(cloud)
    repo = next(
        r
        for r in cloud.world.iter_repositories()
        if r.mainbranch
        and r.read_file(r.commits[r.branches[r.mainbranch]], "catalog-info.yaml") is None
    )
    record = provider.get_repository(repo.uuid)
    current = provider.read_file(record, "catalog-info.yaml")
    proposed = catalog_file_render(entity)
    assert catalog_file_diff(current, proposed).startswith("--- /dev/null")
    provider.write_files(
        WriteRequest(
            repo=record,
            files=(FileChange("catalog-info.yaml", proposed),),
            message="Add catalog-info.yaml",
            mode="commit",
            expected={"catalog-info.yaml": blob_id(current)},
        )
    )
    written = provider.read_file(record, "catalog-info.yaml")
    assert written == proposed.encode()
    before = entity.etag
    result = entities_upsert(documents=[yaml.safe_load(written)])
    assert (result.created, result.updated, result.unchanged) == (0, 0, 1)
    assert Entity.objects.get(pk=entity.pk).etag == before
