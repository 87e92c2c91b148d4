"""Entity documents flattened into the lower-cased key/value rows filters are answered from."""

import pytest

from catalog.models import EntitySearch
from catalog.rendering import entity_document
from catalog.search import MAX_KEY_LENGTH, MAX_VALUE_LENGTH, search_rows
from catalog.services import entities_upsert


def rows_of(document: dict) -> set[tuple[str, str | None, str | None]]:
    return set(search_rows(document))


def document(**overrides) -> dict:
    doc = {
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "Component",
        "metadata": {"name": "Checkout-Service", "namespace": "Shop"},
        "spec": {"type": "service", "lifecycle": "production", "owner": "team-a"},
    }
    for key, value in overrides.items():
        section, _, field = key.partition("__")
        doc[section][field] = value
    return doc


def test_keys_and_values_are_lower_cased_and_the_original_value_keeps_its_case():
    rows = rows_of(document(metadata__title="Checkout Service", spec__subType="gRPC-Gateway"))

    assert ("kind", "component", "Component") in rows
    assert ("apiversion", "backstage.io/v1alpha1", "backstage.io/v1alpha1") in rows
    assert ("metadata.title", "checkout service", "Checkout Service") in rows
    assert ("spec.subtype", "grpc-gateway", "gRPC-Gateway") in rows
    assert all(key == key.lower() for key, _, _ in rows)
    assert all(value == value.lower() for _, value, _ in rows if value is not None)


def test_each_tag_is_a_value_row_and_a_true_row():
    rows = rows_of(document(metadata__tags=["java", "spring"]))

    assert {row for row in rows if row[0].startswith("metadata.tags")} == {
        ("metadata.tags", "java", "java"),
        ("metadata.tags", "spring", "spring"),
        ("metadata.tags.java", "true", "true"),
        ("metadata.tags.spring", "true", "true"),
    }


def test_string_list_items_keep_their_case_in_original_value_but_not_in_keys():
    rows = rows_of(document(spec__providesApis=["Checkout-API"]))

    assert ("spec.providesapis", "checkout-api", "Checkout-API") in rows
    assert ("spec.providesapis.checkout-api", "true", "true") in rows


def test_repeated_list_items_give_one_row_each():
    rows = search_rows(document(metadata__tags=["java", "java"]))

    assert [row for row in rows if row[0].startswith("metadata.tags")] == [
        ("metadata.tags", "java", "java"),
        ("metadata.tags.java", "true", "true"),
    ]


def test_label_and_annotation_keys_are_dotted_paths_lower_cased():
    rows = rows_of(
        document(
            metadata__labels={"Tier": "Backend"},
            metadata__annotations={"backstage.io/TechDocs-Ref": "dir:."},
        )
    )

    assert ("metadata.labels.tier", "backend", "Backend") in rows
    assert ("metadata.annotations.backstage.io/techdocs-ref", "dir:.", "dir:.") in rows


def test_nested_mappings_and_lists_of_mappings_flatten_to_dotted_keys():
    links = [{"url": "https://Example.com/A", "title": "A"}, {"url": "https://example.com/b"}]
    rows = rows_of(document(metadata__links=links, spec__profile={"email": "Ada@Example.com"}))

    assert ("metadata.links.url", "https://example.com/a", "https://Example.com/A") in rows
    assert ("metadata.links.url", "https://example.com/b", "https://example.com/b") in rows
    assert ("metadata.links.title", "a", "A") in rows
    assert ("spec.profile.email", "ada@example.com", "Ada@Example.com") in rows


def test_scalars_are_stored_as_text_and_null_as_none():
    rows = rows_of(document(spec__replicas=3, spec__public=True, spec__ratio=0.5, spec__note=None))

    assert {row for row in rows if row[0] in {"spec.replicas", "spec.public", "spec.ratio"}} == {
        ("spec.replicas", "3", "3"),
        ("spec.public", "true", "true"),
        ("spec.ratio", "0.5", "0.5"),
    }
    assert ("spec.note", None, None) in rows


def test_a_value_of_the_maximum_length_is_kept():
    value = "A" * MAX_VALUE_LENGTH

    assert ("metadata.description", value.lower(), value) in rows_of(
        document(metadata__description=value)
    )


def test_a_too_long_value_is_a_row_without_a_value():
    rows = rows_of(document(metadata__description="A" * (MAX_VALUE_LENGTH + 1)))

    assert [row for row in rows if row[0] == "metadata.description"] == [
        ("metadata.description", None, None)
    ]


def test_no_lower_cased_value_is_longer_than_the_column():
    rows = search_rows(document(metadata__description="İstanbul " * 22))  # 198 characters

    assert all(len(value) <= MAX_VALUE_LENGTH for _, value, _ in rows if value is not None)


def test_a_too_long_key_is_not_indexed():
    long_key = "k" * MAX_KEY_LENGTH
    rows = rows_of(document(spec__nested={long_key: "x"}))

    assert not [key for key, _, _ in rows if long_key in key]


def test_name_namespace_and_uid_are_always_present():
    rows = rows_of(document(metadata__uid="0F0E0D0C-aaaa-bbbb-cccc-000000000001"))

    assert ("metadata.name", "checkout-service", "Checkout-Service") in rows
    assert ("metadata.namespace", "shop", "Shop") in rows
    assert (
        "metadata.uid",
        "0f0e0d0c-aaaa-bbbb-cccc-000000000001",
        "0F0E0D0C-aaaa-bbbb-cccc-000000000001",
    ) in rows


def test_a_document_without_namespace_or_uid_still_has_those_keys():
    doc = document()
    del doc["metadata"]["namespace"]
    rows = rows_of(doc)

    assert ("metadata.namespace", "default", "default") in rows
    assert ("metadata.uid", None, None) in rows


def test_each_key_value_pair_appears_once():
    rows = search_rows(document(metadata__tags=["java"], metadata__labels={"java": "java"}))

    assert len(rows) == len({(key, value) for key, value, _ in rows})


def test_relations_status_and_etag_are_not_indexed():
    doc = document(metadata__etag="abc123")
    doc["relations"] = [{"type": "ownedBy", "targetRef": "group:default/team-a"}]
    doc["status"] = {"items": [{"type": "x"}]}

    keys = {key for key, _, _ in search_rows(doc)}

    assert not {k for k in keys if k.startswith(("relations", "status", "metadata.etag"))}


@pytest.mark.django_db
def test_stored_rows_are_the_rows_of_the_entitys_document(make_document):
    source = make_document(
        "Component", "Cart", title="Cart", tags=["java"], labels={"tier": "Backend"}
    )
    (entity,) = entities_upsert(documents=[source]).entities

    stored = set(
        EntitySearch.objects.filter(entity=entity).values_list("key", "value", "original_value")
    )

    assert stored == set(search_rows(entity_document(entity)))
    assert ("metadata.uid", str(entity.uid), str(entity.uid)) in stored
    assert ("metadata.labels.tier", "backend", "Backend") in stored


@pytest.mark.django_db
@pytest.mark.parametrize(
    "before",
    [([], {}), ([{"integration_id": 1, "action": "merge"}], {"bitbucket": {"slug": "old"}})],
)
def test_an_ingested_write_leaves_the_search_rows_a_full_reindex_would(before):
    """Only the ingested properties' rows are rewritten; the result equals indexing anew."""
    from catalog.services import entities_index, entities_ingested_write

    (entity,) = entities_upsert(
        documents=[document(metadata__tags=["java"], metadata__namespace="shop")]
    ).entities
    entities_ingested_write(ingested={entity.pk: before})
    links = [{"integration_id": 7, "integration_name": "Cloud", "action": "register"}]
    properties = {"bitbucket": {"slug": "Checkout", "project": {"key": "PAY"}}}
    assert entities_ingested_write(ingested={entity.pk: (links, properties)}) == 1

    def rows():
        return sorted(
            EntitySearch.objects.filter(entity=entity).values_list("key", "value", "original_value")
        )

    written = rows()
    assert ("integration_properties.bitbucket.slug", "checkout", "Checkout") in written
    assert ("metadata.integration.integration_name", "cloud", "Cloud") in written
    assert not [row for row in written if row[0].endswith(".integration_id") and row[1] == "1"]
    entity.refresh_from_db()
    entities_index(entities=[entity])
    assert rows() == written
