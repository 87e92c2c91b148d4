"""Relations implied by spec fields, and the forward and inverse rows the write path keeps."""

import pytest

from catalog.models import Entity, Relation
from catalog.relations import INVERSE, RELATION_TYPES, declared_relations
from catalog.selectors import entity_documents
from catalog.services import entities_upsert, entity_delete


def declared(kind: str, spec: dict, namespace: str = "default") -> list[tuple[str, str]]:
    return [(r.type, r.target.key) for r in declared_relations(kind, namespace, spec)]


# What a spec declares ----------------------------------------------------------------------------


def test_owner_defaults_to_a_group_in_the_entitys_own_namespace():
    assert declared("Component", {"owner": "team-a"}, namespace="shop") == [
        ("ownedBy", "group:shop/team-a")
    ]


@pytest.mark.parametrize(
    ("owner", "target"),
    [
        ("user:ada", "user:shop/ada"),
        ("group:default/team-a", "group:default/team-a"),
        ("ops/sre", "group:ops/sre"),
        ("Group:Shop/Team-A", "group:shop/team-a"),
    ],
)
def test_owner_keeps_an_explicit_kind_or_namespace(owner, target):
    assert declared("Component", {"owner": owner}, namespace="shop") == [("ownedBy", target)]


@pytest.mark.parametrize("kind", ["Component", "API", "System", "Domain", "Resource"])
def test_every_kind_with_an_owner_is_owned_by_it(kind):
    assert declared(kind, {"owner": "team-a"}) == [("ownedBy", "group:default/team-a")]


@pytest.mark.parametrize("kind", ["Component", "API", "Resource"])
def test_system_makes_the_entity_part_of_a_system(kind):
    assert declared(kind, {"system": "checkout"}, namespace="shop") == [
        ("partOf", "system:shop/checkout")
    ]


def test_system_field_is_ignored_on_kinds_that_cannot_belong_to_a_system():
    assert declared("Group", {"system": "checkout"}) == []


def test_domain_makes_a_system_part_of_a_domain():
    assert declared("System", {"domain": "payments"}) == [("partOf", "domain:default/payments")]


def test_domain_field_is_ignored_on_components():
    assert declared("Component", {"domain": "payments"}) == []


def test_subcomponent_of_is_part_of_a_component():
    assert declared("Component", {"subcomponentOf": "checkout"}) == [
        ("partOf", "component:default/checkout")
    ]


def test_depends_on_needs_a_kind_in_every_ref():
    spec = {"dependsOn": ["resource:checkout-db", "payments-service", "component:ops/ledger"]}

    assert declared("Component", spec, namespace="shop") == [
        ("dependsOn", "resource:shop/checkout-db"),
        ("dependsOn", "component:ops/ledger"),
    ]


def test_dependency_of_needs_a_kind_in_every_ref():
    spec = {"dependencyOf": ["component:checkout-service", "storefront"]}

    assert declared("Resource", spec) == [("dependencyOf", "component:default/checkout-service")]


def test_provided_and_consumed_apis_default_to_kind_api():
    spec = {"providesApis": ["checkout-api", "api:partner/orders"], "consumesApis": ["payments"]}

    assert declared("Component", spec, namespace="shop") == [
        ("providesApi", "api:shop/checkout-api"),
        ("providesApi", "api:partner/orders"),
        ("consumesApi", "api:shop/payments"),
    ]


def test_member_of_makes_a_user_member_of_groups():
    assert declared("User", {"memberOf": ["team-a", "group:ops/sre"]}, namespace="people") == [
        ("memberOf", "group:people/team-a"),
        ("memberOf", "group:ops/sre"),
    ]


def test_group_parent_and_children_are_child_of_and_parent_of():
    spec = {"type": "team", "parent": "engineering", "children": ["squad-a", "squad-b"]}

    assert declared("Group", spec) == [
        ("childOf", "group:default/engineering"),
        ("parentOf", "group:default/squad-a"),
        ("parentOf", "group:default/squad-b"),
    ]


def test_group_members_are_users():
    assert declared("Group", {"type": "team", "members": ["ada"]}) == [
        ("hasMember", "user:default/ada")
    ]


def test_the_same_relation_declared_twice_is_one_relation():
    spec = {"dependsOn": ["resource:db", "Resource:default/DB"], "owner": "team-a"}

    assert declared("Component", spec) == [
        ("ownedBy", "group:default/team-a"),
        ("dependsOn", "resource:default/db"),
    ]


def test_unparseable_or_empty_refs_declare_nothing():
    spec = {"owner": ":", "system": "", "providesApis": ["", None, "api:/x"]}

    assert declared("Component", spec) == []


def test_every_relation_type_has_an_inverse_that_leads_back():
    assert set(RELATION_TYPES) == set(INVERSE)
    for relation_type, inverse in INVERSE.items():
        assert inverse != relation_type
        assert INVERSE[inverse] == relation_type


# Rows written by entities_upsert -----------------------------------------------------------------


def rows(**filters) -> set[tuple[str, str, str, str]]:
    """(originating ref, source, type, target) of the stored relation rows."""
    return {
        (r.originating_entity.ref_key, r.source_key, r.type, r.target_ref)
        for r in Relation.objects.filter(**filters).select_related("originating_entity")
    }


@pytest.mark.django_db
def test_writing_an_entity_stores_forward_and_inverse_rows_it_originates(make_document):
    spec = {
        "owner": "team-a",
        "system": "checkout",
        "providesApis": ["checkout-api"],
        "dependsOn": ["resource:checkout-db"],
    }
    entities_upsert(documents=[make_document("Component", "cart", namespace="shop", spec=spec)])

    origin = "component:shop/cart"
    assert rows() == {
        (origin, origin, "ownedBy", "group:shop/team-a"),
        (origin, "group:shop/team-a", "ownerOf", origin),
        (origin, origin, "partOf", "system:shop/checkout"),
        (origin, "system:shop/checkout", "hasPart", origin),
        (origin, origin, "providesApi", "api:shop/checkout-api"),
        (origin, "api:shop/checkout-api", "apiProvidedBy", origin),
        (origin, origin, "dependsOn", "resource:shop/checkout-db"),
        (origin, "resource:shop/checkout-db", "dependencyOf", origin),
    }


@pytest.mark.django_db
def test_relation_rows_carry_lower_cased_keys_and_refs(make_document):
    document = make_document("Component", "Cart", spec={"owner": "Group:Default/Team-A"})

    entities_upsert(documents=[document])

    assert {(r.source_key, r.type, r.target_ref, r.target_key) for r in Relation.objects.all()} == {
        ("component:default/cart", "ownedBy", "group:default/team-a", "group:default/team-a"),
        ("group:default/team-a", "ownerOf", "component:default/cart", "component:default/cart"),
    }


@pytest.mark.django_db
def test_rewriting_with_a_new_owner_moves_the_inverse_owner_of(make_document):
    groups = [make_document("Group", "team-a"), make_document("Group", "team-b")]
    user = make_document("User", "ada", spec={"memberOf": ["team-a"]})
    entities_upsert(documents=[*groups, user, make_document("Component", "cart")])
    user_rows = rows(originating_entity__name="ada")

    entities_upsert(documents=[make_document("Component", "cart", spec={"owner": "team-b"})])

    cart = "component:default/cart"
    assert rows(originating_entity__name="cart") == {
        (cart, cart, "ownedBy", "group:default/team-b"),
        (cart, "group:default/team-b", "ownerOf", cart),
    }
    assert not Relation.objects.filter(source_key="group:default/team-a", type="ownerOf").exists()
    assert rows(originating_entity__name="ada") == user_rows


@pytest.mark.django_db
def test_rewriting_drops_relations_no_longer_declared(make_document):
    spec = {"system": "checkout", "consumesApis": ["payments-api"]}
    entities_upsert(documents=[make_document("Component", "cart", spec=spec)])

    entities_upsert(documents=[make_document("Component", "cart")])

    assert {r.type for r in Relation.objects.all()} == {"ownedBy", "ownerOf"}


@pytest.mark.django_db
def test_unchanged_rewrite_keeps_the_same_relation_rows(make_document):
    document = make_document("Component", "cart", spec={"system": "checkout"})
    entities_upsert(documents=[document])
    before = set(Relation.objects.values_list("pk", "source_key", "type", "target_key"))

    result = entities_upsert(documents=[document])

    assert result.unchanged == 1
    assert set(Relation.objects.values_list("pk", "source_key", "type", "target_key")) == before


@pytest.mark.django_db
def test_deleting_an_entity_removes_the_rows_it_originated_only(make_document):
    cart = make_document("Component", "cart", spec={"dependsOn": ["component:ledger"]})
    ledger = make_document("Component", "ledger", spec={"dependencyOf": ["component:cart"]})
    entities_upsert(documents=[cart, ledger])

    entity_delete(entity=Entity.objects.get(name="cart"))

    # What ledger declared stays, including its inverse row on the deleted entity's key.
    assert rows() == {
        ("component:default/ledger", "component:default/ledger", "ownedBy", "group:default/team-a"),
        ("component:default/ledger", "group:default/team-a", "ownerOf", "component:default/ledger"),
        (
            "component:default/ledger",
            "component:default/ledger",
            "dependencyOf",
            "component:default/cart",
        ),
        (
            "component:default/ledger",
            "component:default/cart",
            "dependsOn",
            "component:default/ledger",
        ),
    }


@pytest.mark.django_db
def test_documents_of_both_sides_show_the_relation(make_document):
    group, component = entities_upsert(
        documents=[make_document("Group", "team-a"), make_document("Component", "cart")]
    ).entities

    group_doc, component_doc = entity_documents([group, component])

    assert group_doc["relations"] == [
        {
            "type": "ownerOf",
            "targetRef": "component:default/cart",
            "target": {"kind": "component", "namespace": "default", "name": "cart"},
        }
    ]
    assert [(r["type"], r["targetRef"]) for r in component_doc["relations"]] == [
        ("ownedBy", "group:default/team-a")
    ]
