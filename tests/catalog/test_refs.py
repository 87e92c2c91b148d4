"""Entity references parsed and stringified as ``@backstage/catalog-model`` does."""

import pytest

from catalog.refs import EntityRef, EntityRefError, parse_entity_ref, ref_key, stringify_entity_ref


def test_full_ref_is_split_into_kind_namespace_and_name():
    assert parse_entity_ref("component:default/foo") == EntityRef("component", "default", "foo")


def test_parse_keeps_the_case_of_every_part():
    ref = parse_entity_ref("Component:Ops/MyService")

    assert (ref.kind, ref.namespace, ref.name) == ("Component", "Ops", "MyService")


def test_parsed_ref_key_and_str_are_lower_cased():
    ref = parse_entity_ref("Component:Ops/MyService")

    assert ref.key == "component:ops/myservice"
    assert str(ref) == "component:ops/myservice"


def test_refs_differing_only_in_case_share_one_key():
    assert (
        parse_entity_ref("API:Default/Checkout-API").key
        == parse_entity_ref("api:default/checkout-api").key
    )


def test_missing_namespace_is_the_default_namespace():
    assert parse_entity_ref("group:team-a") == EntityRef("group", "default", "team-a")


def test_missing_namespace_takes_the_given_default_namespace():
    assert parse_entity_ref("group:team-a", default_namespace="ops").namespace == "ops"


def test_missing_kind_takes_the_default_kind():
    assert parse_entity_ref("team-a", default_kind="Group") == EntityRef(
        "Group", "default", "team-a"
    )


def test_bare_name_takes_both_defaults():
    ref = parse_entity_ref("team-a", default_kind="Group", default_namespace="ops")

    assert ref == EntityRef("Group", "ops", "team-a")


def test_namespace_and_name_without_kind_takes_the_default_kind():
    assert parse_entity_ref("ops/sre", default_kind="Group") == EntityRef("Group", "ops", "sre")


def test_explicit_parts_win_over_defaults():
    ref = parse_entity_ref("user:people/ada", default_kind="Group", default_namespace="ops")

    assert ref == EntityRef("user", "people", "ada")


def test_empty_default_namespace_falls_back_to_default():
    assert parse_entity_ref("group:team-a", default_namespace="").namespace == "default"


@pytest.mark.parametrize("ref", ["foo", "default/foo"])
def test_missing_kind_without_a_default_kind_is_an_error(ref):
    with pytest.raises(EntityRefError, match="no kind"):
        parse_entity_ref(ref)


def test_empty_default_kind_counts_as_no_default_kind():
    with pytest.raises(EntityRefError, match="no kind"):
        parse_entity_ref("foo", default_kind="")


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        (":foo", "empty kind"),
        (":default/foo", "empty kind"),
        ("component:/foo", "empty namespace"),
        ("/foo", "empty namespace"),
        ("component:default/", "empty name"),
        ("component:", "empty name"),
        ("default/", "empty name"),
        ("", "non-empty string"),
        ("   ", "non-empty string"),
        (None, "non-empty string"),
        (42, "non-empty string"),
    ],
)
def test_empty_or_missing_parts_are_errors(ref, message):
    with pytest.raises(EntityRefError, match=message):
        parse_entity_ref(ref, default_kind="Component")


@pytest.mark.parametrize(
    "ref",
    ["component:default/foo/bar", "component:default/foo:bar", "component:foo:bar", "a/b/c"],
)
def test_a_separator_left_in_the_name_is_malformed(ref):
    with pytest.raises(EntityRefError, match="malformed"):
        parse_entity_ref(ref, default_kind="Component")


def test_everything_between_the_first_colon_and_the_first_slash_is_the_namespace():
    # Backstage's parseRefString does the same: "a:b:c/d" is kind "a", namespace "b:c", name "d".
    assert parse_entity_ref("a:b:c/d") == EntityRef("a", "b:c", "d")


def test_a_colon_after_the_namespace_slash_is_malformed():
    with pytest.raises(EntityRefError):
        parse_entity_ref("default/foo:bar", default_kind="Component")


def test_stringify_lower_cases_every_part():
    assert stringify_entity_ref("Component", "Ops", "MyService") == "component:ops/myservice"


def test_stringify_fills_in_the_default_namespace():
    assert stringify_entity_ref("API", "", "Checkout") == "api:default/checkout"


def test_ref_key_is_the_stringified_ref():
    assert ref_key("Group", "Default", "Team-A") == "group:default/team-a"


def test_stringified_ref_parses_back_to_the_lower_cased_parts():
    stringified = stringify_entity_ref("Resource", "Data", "Orders-DB")

    assert parse_entity_ref(stringified) == EntityRef("resource", "data", "orders-db")
