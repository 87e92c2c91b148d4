"""Entity documents checked by Backstage's rules, each problem reported at its dotted path."""

import copy

import pytest

from catalog.validation import (
    EntityValidationError,
    is_valid_name,
    validate_entity_document,
    validate_or_raise,
)
from tests.catalog.conftest import MINIMAL_SPECS, entity_document


def paths(document) -> list[str]:
    return [issue.path for issue in validate_entity_document(document)]


def component(**metadata) -> dict:
    name = metadata.pop("name", "checkout-service")
    return entity_document("Component", name, **metadata)


@pytest.mark.parametrize("kind", sorted(MINIMAL_SPECS))
def test_minimal_document_of_each_built_in_kind_is_valid(kind):
    assert validate_entity_document(entity_document(kind, "example")) == []


def test_a_custom_kind_with_any_spec_is_valid():
    document = entity_document("Template", "scaffold-service", spec={"steps": []})

    assert validate_entity_document(document) == []


# Names -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "a",
        "Z",
        "7",
        "checkout-service",
        "checkout_service",
        "checkout.service",
        "Checkout-Service_v2.1",
        "a--b",
        "a._-b",
        "0abc9",
        "x" * 63,
    ],
)
def test_valid_names_are_accepted(name):
    assert is_valid_name(name)
    assert paths(component(name=name)) == []


@pytest.mark.parametrize(
    "name",
    [
        "",
        "x" * 64,
        "-checkout",
        "checkout-",
        "_checkout",
        "checkout_",
        ".checkout",
        "checkout.",
        "-",
        "checkout service",
        " checkout",
        "checkout ",
        "check\tout",
        "café",
        "サービス",
        "checkout/service",
        "component:checkout",
        "checkout@v2",
        "checkout+v2",
        42,
        None,
        ["checkout"],
    ],
)
def test_invalid_names_are_refused_at_metadata_name(name):
    assert not is_valid_name(name)
    assert paths(component(name=name)) == ["metadata.name"]


def test_name_of_63_characters_is_the_longest_accepted():
    assert paths(component(name="a" * 63)) == []
    issues = validate_entity_document(component(name="a" * 64))

    assert [(i.path, "longer than 63" in i.message) for i in issues] == [("metadata.name", True)]


def test_missing_name_is_reported_at_metadata_name():
    document = component()
    del document["metadata"]["name"]

    assert paths(document) == ["metadata.name"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("metadata.name", "checkout\n"),
        ("metadata.namespace", "ops\n"),
        ("kind", "Component\n"),
        ("metadata.tags[0]", "java\n"),
        ("metadata.labels.tier", "backend\n"),
    ],
)
def test_a_trailing_newline_makes_a_value_invalid(field, value):
    document = component()
    if field == "kind":
        document["kind"] = value
    elif field == "metadata.name":
        document["metadata"]["name"] = value
    elif field == "metadata.namespace":
        document["metadata"]["namespace"] = value
    elif field == "metadata.tags[0]":
        document["metadata"]["tags"] = [value]
    else:
        document["metadata"]["labels"] = {"tier": value}

    assert paths(document) == [field]


# Namespaces and kinds ----------------------------------------------------------------------------


@pytest.mark.parametrize("namespace", ["default", "ops", "team-a", "a1-b2-c3", "9", "n" * 63])
def test_valid_namespaces_are_accepted(namespace):
    assert paths(component(namespace=namespace)) == []


@pytest.mark.parametrize(
    "namespace",
    ["", "Ops", "team_a", "team.a", "-ops", "ops-", "a--b", "my ns", "n" * 64, None, 7],
)
def test_invalid_namespaces_are_refused_at_metadata_namespace(namespace):
    assert paths(component(namespace=namespace)) == ["metadata.namespace"]


@pytest.mark.parametrize("kind", ["Component", "API", "component", "MyKind2", "X"])
def test_valid_kinds_are_accepted(kind):
    document = component()
    document["kind"] = kind

    assert "kind" not in paths(document)


@pytest.mark.parametrize("kind", ["", "2Kind", "My-Kind", "my_kind", "Com ponent", "K" * 64, None])
def test_invalid_kinds_are_refused_at_kind(kind):
    document = component()
    document["kind"] = kind

    assert paths(document) == ["kind"]


@pytest.mark.parametrize("api_version", [None, "", "v1", "backstage.io", "Backstage.io/v1alpha1"])
def test_invalid_api_versions_are_refused_at_api_version(api_version):
    document = component()
    document["apiVersion"] = api_version

    assert paths(document) == ["apiVersion"]


def test_custom_api_version_group_is_accepted():
    document = component()
    document["apiVersion"] = "example.com/v1beta2"

    assert paths(document) == []


# Metadata: tags, labels, annotations, links ------------------------------------------------------


@pytest.mark.parametrize("tag", ["java", "c++", "c#", "k8s:prod", "spring-boot", "3d", "t" * 63])
def test_valid_tags_are_accepted(tag):
    assert paths(component(tags=[tag])) == []


@pytest.mark.parametrize(
    "tag", ["Java", "java_8", "java.8", "a--b", "-a", "a-", "spring boot", "", "t" * 64, 5]
)
def test_invalid_tag_is_reported_at_its_index(tag):
    assert paths(component(tags=["java", tag])) == ["metadata.tags[1]"]


def test_tags_must_be_a_list():
    assert paths(component(tags="java")) == ["metadata.tags"]


@pytest.mark.parametrize("field", ["labels", "annotations"])
@pytest.mark.parametrize(
    "key",
    [
        "tier",
        "Tier_2.x",
        "example.com/tier",
        "backstage.io/techdocs-ref",
        "a.b-c.d/x_y",
        "k" * 63,
    ],
)
def test_valid_label_and_annotation_keys_are_accepted(field, key):
    assert paths(component(**{field: {key: "value"}})) == []


@pytest.mark.parametrize("field", ["labels", "annotations"])
@pytest.mark.parametrize(
    "key",
    [
        "",
        "-tier",
        "tier-",
        "tier name",
        "Example.com/tier",
        "example_com/tier",
        "example.com/",
        "a/b/c",
        "example.com/-tier",
        "k" * 64,
    ],
)
def test_invalid_label_and_annotation_keys_are_reported_at_the_mapping(field, key):
    assert paths(component(**{field: {key: "value"}})) == [f"metadata.{field}"]


@pytest.mark.parametrize("field", ["labels", "annotations"])
def test_key_with_an_empty_prefix_is_invalid(field):
    assert paths(component(**{field: {"/tier": "value"}})) == [f"metadata.{field}"]


@pytest.mark.parametrize("value", ["", "backend", "Tier_2.x", "v" * 63])
def test_valid_label_values_are_accepted(value):
    assert paths(component(labels={"tier": value})) == []


@pytest.mark.parametrize("value", ["back end", "-backend", "backend.", "v" * 64, "a/b", 5, None])
def test_invalid_label_value_is_reported_at_its_key(value):
    assert paths(component(labels={"tier": value})) == ["metadata.labels.tier"]


@pytest.mark.parametrize(
    "value", ["", "dir:.", "a value with spaces", "line one\nline two", "x" * 500]
)
def test_any_string_is_a_valid_annotation_value(value):
    assert paths(component(annotations={"example.com/note": value})) == []


@pytest.mark.parametrize("value", [True, 5, None, ["a"], {"a": "b"}])
def test_non_string_annotation_value_is_reported_at_its_key(value):
    document = component(annotations={"example.com/note": value})

    assert paths(document) == ["metadata.annotations.example.com/note"]


@pytest.mark.parametrize("field", ["labels", "annotations"])
def test_labels_and_annotations_must_be_mappings(field):
    assert paths(component(**{field: ["tier=backend"]})) == [f"metadata.{field}"]


def test_each_link_needs_a_url():
    links = [{"url": "https://example.com", "title": "Home"}, {"title": "Runbook"}, "https://x"]

    assert paths(component(links=links)) == ["metadata.links[1].url", "metadata.links[2].url"]


@pytest.mark.parametrize("field", ["title", "description"])
def test_title_and_description_must_be_strings(field):
    assert paths(component(**{field: 12})) == [f"metadata.{field}"]


def test_metadata_must_be_a_mapping():
    document = component()
    document["metadata"] = "checkout-service"

    assert paths(document) == ["metadata", "metadata.name"]


def test_a_document_that_is_not_a_mapping_is_one_issue_without_a_path():
    issues = validate_entity_document(["apiVersion", "kind"])

    assert [issue.path for issue in issues] == [""]
    assert "mapping" in str(issues[0])


# Required spec fields per kind -------------------------------------------------------------------

REQUIRED = [
    ("Component", "type"),
    ("Component", "lifecycle"),
    ("Component", "owner"),
    ("API", "type"),
    ("API", "lifecycle"),
    ("API", "owner"),
    ("API", "definition"),
    ("System", "owner"),
    ("Domain", "owner"),
    ("Resource", "type"),
    ("Resource", "owner"),
    ("Group", "type"),
]


@pytest.mark.parametrize(("kind", "field"), REQUIRED)
def test_missing_required_spec_field_is_reported_at_its_path(kind, field):
    document = entity_document(kind, "example")
    del document["spec"][field]

    assert paths(document) == [f"spec.{field}"]


@pytest.mark.parametrize(("kind", "field"), REQUIRED)
@pytest.mark.parametrize("value", ["", "   ", None, 3, ["team-a"]])
def test_blank_or_non_string_required_spec_field_is_reported(kind, field, value):
    document = entity_document(kind, "example", spec={field: value})

    # A blank owner is also an unparseable reference: the path may be reported twice.
    assert set(paths(document)) == {f"spec.{field}"}


def test_kind_is_matched_case_insensitively_for_required_fields():
    document = entity_document("Component", "example")
    document["kind"] = "component"
    del document["spec"]["owner"]

    assert paths(document) == ["spec.owner"]


def test_component_without_spec_reports_every_required_field():
    document = entity_document("Component", "example")
    del document["spec"]

    assert paths(document) == ["spec.type", "spec.lifecycle", "spec.owner"]


def test_spec_must_be_a_mapping():
    document = entity_document("System", "example")
    document["spec"] = ["owner", "team-a"]

    assert paths(document) == ["spec", "spec.owner"]


def test_location_needs_a_target_or_targets():
    document = entity_document("Location", "example")
    del document["spec"]["target"]

    assert paths(document) == ["spec.target"]
    document["spec"]["targets"] = ["./a.yaml", "./b.yaml"]
    assert paths(document) == []


def test_location_targets_must_be_a_list_of_strings():
    document = entity_document("Location", "example", spec={"targets": "./a.yaml"})

    assert paths(document) == ["spec.targets"]


def test_group_without_children_is_refused():
    document = entity_document("Group", "example")
    del document["spec"]["children"]

    assert paths(document) == ["spec.children"]


def test_user_without_member_of_is_refused():
    document = entity_document("User", "example")
    del document["spec"]["memberOf"]

    assert paths(document) == ["spec.memberOf"]


@pytest.mark.parametrize(
    "field", ["dependsOn", "dependencyOf", "providesApis", "consumesApis", "children", "memberOf"]
)
@pytest.mark.parametrize("value", ["api:checkout", ["api:checkout", ""], ["api:checkout", 3]])
def test_reference_lists_must_be_lists_of_non_empty_strings(field, value):
    kind = {"children": "Group", "memberOf": "User"}.get(field, "Component")
    document = entity_document(kind, "example", spec={field: value})

    # Group children are checked twice, so that path may be reported twice.
    assert set(paths(document)) == {f"spec.{field}"}


@pytest.mark.parametrize("field", ["owner", "system", "domain", "parent", "subcomponentOf"])
@pytest.mark.parametrize("ref", [":team-a", "group:/team-a", "group:default/", "a:b/c/d"])
def test_unparseable_single_reference_is_reported_at_its_field(field, ref):
    document = entity_document("Component", "example", spec={field: ref})

    assert paths(document) == [f"spec.{field}"]


@pytest.mark.parametrize("owner", ["team-a", "group:team-a", "user:default/ada", "ops/sre"])
def test_owner_may_be_any_reference_form(owner):
    assert paths(entity_document("Component", "example", spec={"owner": owner})) == []


# Reporting ---------------------------------------------------------------------------------------


def test_every_problem_of_a_document_is_reported_in_document_order():
    document = component(name="-bad-", tags=["Java"], labels={"tier": "back end"})
    del document["spec"]["owner"]

    assert paths(document) == [
        "metadata.name",
        "metadata.tags[0]",
        "metadata.labels.tier",
        "spec.owner",
    ]


def test_validate_or_raise_names_each_path_in_its_message():
    document = component(name="-bad-")
    del document["spec"]["lifecycle"]

    with pytest.raises(EntityValidationError) as raised:
        validate_or_raise(document)

    assert [issue.path for issue in raised.value.issues] == ["metadata.name", "spec.lifecycle"]
    assert str(raised.value).startswith("metadata.name: '-bad-' is not a valid name")
    assert "; spec.lifecycle: is required" in str(raised.value)


def test_validate_or_raise_accepts_a_valid_document_and_leaves_it_untouched():
    document = component(tags=["java"], labels={"tier": "backend"})
    before = copy.deepcopy(document)

    validate_or_raise(document)

    assert document == before


def test_depends_on_refs_must_name_their_kind():
    document = entity_document(
        "Component", "example", spec={"dependsOn": ["resource:db", "payments"]}
    )
    assert paths(document) == ["spec.dependsOn[1]"]
