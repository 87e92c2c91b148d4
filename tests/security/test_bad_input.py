"""Bad input: bodies over the size limit, JSON and YAML nested 10,000 deep or expanding through
aliases, wrongly typed fields, NUL characters, JMESPath that is invalid, 100 KB long or nested
past the parser's recursion, query filters and cursors beyond what the catalog answers quickly,
entity names and kinds outside Backstage's rules.

Each is refused with a 4xx whose message says what is wrong (in Backstage's error shape where the
API uses it), and nothing stored changes: the catalog, the connectors and the integrations with
their rules and mappings are compared row by row before and after.
"""

import base64
import json
from contextlib import contextmanager

import pytest
from django.conf import settings
from django.core.cache import cache
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from catalog.models import Entity
from integrations.models import DiscoveredEntity, Integration
from tests.integrations.bitbucket_cloud.conftest import WS, make_connector, make_integration, world
from tests.integrations.engine.conftest import sync_ok
from tests.security import fuzz_helpers
from tests.security.fuzz_helpers import error_of, stored_state

fuzz_world = fuzz_helpers.fuzz_world  # the fixture, for the tests below

pytestmark = pytest.mark.django_db

CATALOG = "/api/catalog"
INTEGRATIONS = "/api/integrations"
DEEP = 10_000
LONG = 100_000


@contextmanager
def nothing_stored_changes():
    before = stored_state()
    yield
    assert stored_state() == before


def refused(response, status: int, *fragments: str) -> dict:
    """The Backstage error of a refused request, whose message says each of ``fragments``."""
    assert response.status_code == status, response.content[:500]
    error = error_of(response)
    assert error["name"] == "InputError" or status != 400, error
    for fragment in fragments:
        assert fragment in error["message"], (fragment, error["message"][:500])
    return error


def send(client, method: str, url: str, body) -> object:
    raw = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.generic(method.upper(), url, raw, content_type="application/json")


def nested(depth: int, kind: str):
    """JSON text nested ``depth`` levels (written by hand: ``json.dumps`` of an object that deep
    would itself exceed the recursion limit)."""
    if kind == "lists":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


def body_endpoints(world) -> list[tuple[str, str, str]]:
    """(method, url, field taking an object) of every endpoint with a JSON body."""
    return [
        ("post", f"{CATALOG}/entities/by-query", "query"),
        ("post", f"{CATALOG}/entities/by-refs", "query"),
        ("post", f"{CATALOG}/entity-facets", "query"),
        ("post", f"{CATALOG}/validate-entity", "entity"),
        ("post", f"{CATALOG}/refresh", "entityRef"),
        ("post", f"{INTEGRATIONS}/", "target"),
        ("patch", f"{INTEGRATIONS}/{world.integration.pk}", "target"),
        ("post", f"{INTEGRATIONS}/{world.integration.pk}/import", "items"),
        ("post", f"{INTEGRATIONS}/connectors", "config"),
        ("patch", f"{INTEGRATIONS}/connectors/{world.connector.pk}", "config"),
    ]


# -- size, depth, NUL ----------------------------------------------------------------------------


def test_a_body_over_the_upload_limit_is_a_413_on_every_body_endpoint(fuzz_world):
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    with nothing_stored_changes():
        for method, url, field in body_endpoints(fuzz_world):
            body = json.dumps({field: {"description": "x" * limit}})
            response = send(fuzz_world.client, method, url, body)
            refused(response, 413, f"larger than {limit} bytes")


@pytest.mark.parametrize("kind", ["lists", "maps"])
def test_json_nested_10000_deep_is_a_400_on_every_body_endpoint(fuzz_world, kind):
    with nothing_stored_changes():
        for method, url, field in body_endpoints(fuzz_world):
            body = f'{{"{field}": {nested(DEEP, kind)}}}'
            refused(send(fuzz_world.client, method, url, body), 400, "nested deeper than 64")


def test_json_just_past_the_depth_limit_is_refused_before_any_view_walks_it(fuzz_world):
    predicate = {"metadata.name": "payments"}
    for _ in range(63):  # the body, 63 $not and the condition: 65 levels
        predicate = {"$not": predicate}
    with nothing_stored_changes():
        url = f"{CATALOG}/entities/by-query"
        refused(send(fuzz_world.client, "post", url, {"query": predicate}), 400, "deeper than 64")
        refused(
            send(
                fuzz_world.client,
                "patch",
                f"{INTEGRATIONS}/{fuzz_world.integration.pk}",
                {"target": json.loads(nested(64, "maps"))},
            ),
            400,
            "nested deeper than 64 levels",
        )


def test_nul_characters_are_refused_in_bodies_paths_and_query_parameters(fuzz_world):
    client = fuzz_world.client
    with nothing_stored_changes():
        # Inside JSON values no serializer field checks (PostgreSQL's jsonb cannot hold them).
        body = {"name": "x", "provider": "fake", "auth_kind": "none", "config": {"a": "\u0000"}}
        response = send(client, "post", f"{INTEGRATIONS}/connectors", body)
        refused(response, 400, "JSON strings must not contain NUL characters (\\u0000)")
        response = send(
            client, "post", f"{CATALOG}/entities/by-query", {"query": {"kind\u0000": 1}}
        )
        refused(response, 400, "JSON strings must not contain NUL characters")
        for url in (
            f"{CATALOG}/entity-facets?facet=kind%00",
            f"{CATALOG}/entities?filter=metadata.name=a%00b",
            f"{INTEGRATIONS}/{fuzz_world.integration.pk}/discovered?search=pay%00",
            f"{CATALOG}/entities/by-name/component/default/pay%00ments",
        ):
            refused(client.get(url), 400, "must not contain NUL characters (%00)")


# -- wrongly typed -------------------------------------------------------------------------------

WRONG_TYPES = [
    # (method, url, body, what the message says)
    ("post", "/entities/by-query", [], "Expected a dictionary, but got list"),
    ("post", "/entities/by-query", {"query": "kind=component"}, "query: Expected an object."),
    ("post", "/entities/by-query", {"fields": "metadata.name"}, 'but got type "str"'),
    ("post", "/entities/by-query", {"limit": None}, "limit: This field may not be null."),
    ("post", "/entities/by-query", {"limit": "ten"}, "limit: A valid integer is required."),
    ("post", "/entities/by-query", {"limit": 2**40}, "less than or equal to 2147483647"),
    ("post", "/entities/by-query", {"query": {"kind": ["a"]}}, "must be a value or one operator"),
    ("post", "/entities/by-refs", {"entityRefs": "component:default/payments"}, "entityRefs"),
    ("post", "/entities/by-refs", {"entityRefs": [{"kind": "x"}]}, "Not a valid string."),
    ("post", "/entity-facets", {"facets": "kind"}, 'but got type "str"'),
    ("post", "/entity-facets", {"facets": []}, "This list may not be empty."),
    ("post", "/refresh", {"entityRef": None}, "entityRef: This field may not be null."),
    ("post", "/refresh", {"entityRef": "component:default/"}, "has an empty name"),
    ("post", "/validate-entity", {"entity": None}, "entity: This field may not be null."),
    ("patch", "{integration}", {"field_mappings": ["description"]}, "Expected a dictionary"),
    ("patch", "{integration}", {"correlation": {"ingested": "name"}}, "correlation"),
    ("patch", "{integration}", {"labels": "team-a"}, 'but got type "str"'),
    ("patch", "{integration}", {"name": None}, "name: This field may not be null."),
    ("patch", "{integration}", {"target": ["acme"]}, "target: Expected an object."),
    ("patch", "{integration}", {"update_frequency": {"hours": 3}}, "number of minutes"),
    ("patch", "{integration}", {"vanish_threshold": "half"}, "A valid number is required."),
    ("patch", "{integration}", {"secondary_kinds": "commits"}, 'but got type "str"'),
    ("patch", "{integration}", {"start_date": 20240101}, "Date has wrong format."),
    ("post", "{integration}/import", {"discovered_id": "first"}, "A valid integer is required."),
    ("post", "{integration}/import", {"items": {"discovered_id": 1}}, "items"),
    ("post", "{integration}/import", {"items": []}, "This list may not be empty."),
    ("post", "/connectors", {"name": ["x"], "provider": "fake", "auth_kind": "none"}, "name"),
    (
        "post",
        "/connectors",
        {"name": "x", "provider": "fake", "auth_kind": "none", "config": []},
        "config: Expected an object.",
    ),
    (
        "post",
        "/connectors",
        {"name": "x", "provider": "fake", "auth_kind": "none", "secrets": "token"},
        "secrets",
    ),
    ("patch", "/connectors/{connector}", {"provider": "bitbucket_cloud"}, "cannot change"),
]


@pytest.mark.parametrize(("method", "path", "body", "message"), WRONG_TYPES)
def test_a_wrongly_typed_field_is_a_400_naming_it(fuzz_world, method, path, body, message):
    base = INTEGRATIONS if "{" in path or path.startswith("/connectors") else CATALOG
    url = base + path.format(
        integration=f"/{fuzz_world.integration.pk}", connector=fuzz_world.connector.pk
    )
    with nothing_stored_changes():
        refused(send(fuzz_world.client, method, url, body), 400, message)


# -- JMESPath ------------------------------------------------------------------------------------

INVALID_EXPRESSIONS = [
    ("links.html[", "Invalid JMESPath expression 'links.html['"),
    ("name ||", "Invalid JMESPath expression 'name ||'"),
    ("a" * LONG, f"at most 500 characters, this one has {LONG}"),
    # 500 characters, but each '!' is a level of the parser's recursion.
    ("!" * 499 + "a", "nested too deeply"),
    ("   ", "must be a non-empty string"),
]


@pytest.mark.parametrize(("expression", "message"), INVALID_EXPRESSIONS)
def test_an_invalid_or_huge_jmespath_is_a_400_for_mappings_and_correlation_rules(
    fuzz_world, expression, message
):
    url = f"{INTEGRATIONS}/{fuzz_world.integration.pk}"
    bodies = {
        "field_mappings.metadata.description": {
            "field_mappings": {"metadata.description": expression}
        },
        "correlation[0].ingested": {
            "correlation": [{"ingested": expression, "catalog": "metadata.name"}]
        },
        "correlation[0].catalog": {"correlation": [{"ingested": "name", "catalog": expression}]},
    }
    with nothing_stored_changes():
        for field, body in bodies.items():
            # Changing an integration's rules or mappings, or creating one with them.
            create = {"name": "other", "connector": fuzz_world.spare_connector.pk, **body}
            for method, target, data in (
                ("patch", url, body),
                ("post", f"{INTEGRATIONS}/", create),
            ):
                error = refused(send(fuzz_world.client, method, target, data), 400)
                if expression.strip():  # the serializer refuses a blank string first
                    assert message in error["details"][field][0], error


def test_a_catalog_path_over_500_characters_is_a_400(fuzz_world):
    path = "metadata.annotations." + "x" * 600
    url = f"{INTEGRATIONS}/{fuzz_world.integration.pk}"
    with nothing_stored_changes():
        error = refused(
            send(fuzz_world.client, "patch", url, {"field_mappings": {path: "name"}}),
            400,
            "A catalog path is at most 500 characters, this one has 621",
        )
        assert list(error["details"]) == [f"field_mappings.{path}"]


@pytest.fixture
def admin_client(fuzz_world) -> Client:
    from django.contrib.auth import get_user_model

    client = Client()
    client.force_login(get_user_model().objects.get(username="root"))
    return client


def test_the_configuration_page_shows_a_huge_or_deep_jmespath_as_an_error(fuzz_world, admin_client):
    url = reverse("integrations:configuration", args=[fuzz_world.integration.pk])
    data = {
        "name": "acme",
        "connector": fuzz_world.connector.pk,
        "workspace": "acme",
        "registration": "register_and_merge",
        "entity_kind": "Component",
        "entity_type": "service",
        "rule_ingested": ["name"],
        "rule_operator": ["equals"],
        "rule_catalog": ["metadata.name"],
        "mapping_path": ["metadata.description"],
        "mapping_expression": ["description"],
        "update_frequency": "180",
    }
    with nothing_stored_changes():
        for field, value, message in (
            ("mapping_expression", "a" * LONG, f"at most 500 characters, this one has {LONG}"),
            ("rule_ingested", "!" * 499 + "a", "nested too deeply"),
            ("rule_catalog", "metadata.[name", "`metadata.[name` is not a valid JMESPath"),
        ):
            response = admin_client.post(url, {**data, field: [value]})
            assert response.status_code == 200
            page = response.content.decode()
            assert "The settings were not saved" in page
            assert message in page


def test_the_admin_inlines_refuse_a_huge_or_deep_jmespath_on_the_row(fuzz_world, admin_client):
    from tests.integrations.test_admin import admin_url, form_data

    url = admin_url(Integration, "change", fuzz_world.integration.pk)
    data = form_data(admin_client.get(url))
    with nothing_stored_changes():
        response = admin_client.post(
            url,
            {
                **data,
                "correlation_rules-0-ingested_path": "!" * 499 + "a",
                "field_mappings-0-expression": "a" * LONG,
            },
        )
        assert response.status_code == 200
        rules, mappings = (inline.formset for inline in response.context["inline_admin_formsets"])
        assert "nested too deeply" in rules.forms[0].errors["ingested_path"][0]
        assert "at most 500 characters" in mappings.forms[0].errors["expression"][0]


# -- catalog queries -----------------------------------------------------------------------------


def _cursor(payload) -> str:
    raw = payload if isinstance(payload, str) else json.dumps(payload)
    return base64.b64encode(raw.encode()).decode()


def _query_cursor(**changes) -> str:
    payload = {"f": [], "o": [], "t": "", "tf": [], "n": None, "p": None, "b": False}
    return _cursor({**payload, **changes})


def _predicate(depth: int) -> dict:
    predicate = {"kind": "component"}
    for _ in range(depth):
        predicate = {"$not": predicate}
    return predicate


def test_query_filters_beyond_what_the_catalog_answers_quickly_are_a_400(fuzz_world):
    client = fuzz_world.client
    long_value = "x" * LONG
    many = [f"metadata.tags.t{index}" for index in range(51)]
    gets = [
        (f"{CATALOG}/entities", {"filter": f"metadata.name={long_value}"}, "longer than 200"),
        (f"{CATALOG}/entities", {"filter": f"{long_value}=x"}, "Filter key 'xxxx"),
        (f"{CATALOG}/entities", {"filter": ",".join(many)}, "51 filter conditions; at most 50"),
        (f"{CATALOG}/entities", {"filter": many}, "51 filter conditions"),
        (f"{CATALOG}/entities/by-query", {"filter": f"kind={long_value}"}, "longer than 200"),
        (
            f"{CATALOG}/entities/by-query",
            {"fullTextFilterTerm": long_value},
            "Full-text value 'xxxx",
        ),
        (f"{CATALOG}/entity-facets", {"facet": [f"f{i}" for i in range(51)]}, "At most 50 facets"),
        (f"{CATALOG}/entity-facets", {"facet": long_value}, "Facet key 'xxxx"),
        (f"{CATALOG}/entities", {"order": "up:metadata.name"}, "expected asc:<field>"),
        (f"{CATALOG}/entities", {"limit": "ten"}, "limit must be an integer"),
        (f"{CATALOG}/entities", {"offset": str(10**30)}, "offset must be at most 2147483647"),
        (f"{CATALOG}/entities", {"format": "xml"}, "Unsupported format 'xml': use json, yaml"),
    ]
    posts = [
        ({"query": {"metadata.name": long_value}}, "Filter value 'xxxx"),
        ({"query": {"$any": [{"kind": f"k{i}"} for i in range(51)]}}, "51 filter conditions"),
        ({"query": _predicate(17)}, "deeper than 16 levels"),
        ({"query": {"metadata.tags": {"$in": ["a", long_value]}}}, "longer than 200"),
        ({"query": {"kind": {"$regex": ".*"}}}, "Unknown operator '$regex'"),
    ]
    with nothing_stored_changes():
        for url, params, message in gets:
            refused(client.get(url, params), 400, message)
        for body, message in posts:
            refused(send(client, "post", f"{CATALOG}/entities/by-query", body), 400, message)
            facets = {**body, "facets": ["kind"]}
            refused(send(client, "post", f"{CATALOG}/entity-facets", facets), 400, message)
        refused(
            send(client, "post", f"{CATALOG}/entities/by-refs", posts[1][0] | {"entityRefs": []}),
            400,
            "51 filter conditions",
        )


def test_a_forged_or_malformed_cursor_is_a_400(fuzz_world):
    client = fuzz_world.client
    forged = [
        ("not base64 !", "Malformed cursor"),
        (_cursor("[" * DEEP + "]" * DEEP), "Malformed cursor"),
        (_cursor({"f": 1}), "Malformed cursor"),
        (_query_cursor(query=_predicate(200)), "deeper than 16 levels"),
        (_query_cursor(f=[f"metadata.tags.t{i}" for i in range(60)]), "60 filter conditions"),
        (_query_cursor(f=["metadata.name=" + "x" * 300]), "longer than 200"),
        (_query_cursor(p=["a"], o=[]), "Cursor does not match the requested ordering"),
    ]
    with nothing_stored_changes():
        for token, message in forged:
            refused(client.get(f"{CATALOG}/entities/by-query", {"cursor": token}), 400, message)
            refused(client.get(f"{CATALOG}/entities", {"after": token}), 400, message)
            response = send(client, "post", f"{CATALOG}/entities/by-query", {"cursor": token})
            refused(response, 400, message)


def test_an_unknown_api_path_is_a_json_404(fuzz_world):
    for url in (f"{INTEGRATIONS}/null/sync", f"{CATALOG}/entities/nope", f"{INTEGRATIONS}/x/y/z"):
        response = fuzz_world.client.post(url)
        assert refused(response, 404)["message"] == f"No API endpoint at {url}"


def test_integration_lists_clamp_a_huge_offset_to_an_empty_page(fuzz_world):
    for path in ("/", "/connectors", f"/{fuzz_world.integration.pk}/runs"):
        response = fuzz_world.client.get(f"{INTEGRATIONS}{path}", {"offset": str(10**30)})
        assert response.status_code == 200, response.content
        assert response.json()["results"] == []


# -- entity names --------------------------------------------------------------------------------


def _entity(kind: str = "Component", namespace: str = "default", name: str = "payments") -> dict:
    return {
        "apiVersion": "backstage.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"type": "service", "lifecycle": "production", "owner": "team-a"},
    }


BAD_NAMES = [
    ({"name": "x" * 64}, f"metadata.name: '{'x' * 64}' is longer than 63 characters"),
    ({"name": "pay ments!"}, "metadata.name: 'pay ments!' is not a valid name"),
    ({"name": ""}, "metadata.name: must be a non-empty string"),
    ({"name": "-payments"}, "starting and ending with a letter or digit"),
    ({"name": "payments."}, "starting and ending with a letter or digit"),
    ({"name": None}, "metadata.name: must be a non-empty string"),
    ({"namespace": "Team_A"}, "metadata.namespace: 'Team_A' is not a valid namespace"),
    ({"namespace": "a" * 64}, "is not a valid namespace: lower-case DNS label"),
    ({"kind": "1Component"}, "kind: '1Component' is not a valid kind"),
    ({"kind": "Com-ponent"}, "kind: 'Com-ponent' is not a valid kind"),
    ({"kind": ""}, "kind: must be a non-empty string"),
]


@pytest.mark.parametrize(("fields", "message"), BAD_NAMES)
def test_validate_entity_explains_a_name_namespace_or_kind_outside_backstages_rules(
    fuzz_world, fields, message
):
    url = f"{CATALOG}/validate-entity"
    response = send(fuzz_world.client, "post", url, {"entity": _entity(**fields)})
    assert response.status_code == 400, response.content
    errors = response.json()["errors"]
    assert {item["name"] for item in errors} == {"InputError"}
    assert any(message in item["message"] for item in errors), errors


@pytest.mark.parametrize(("fields", "message"), BAD_NAMES)
def test_import_catalog_refuses_a_file_with_a_name_outside_the_rules_and_imports_nothing(
    fuzz_world, tmp_path, fields, message
):
    document = _entity(**{"name": "fresh", **fields})
    path = tmp_path / "catalog-info.yaml"
    path.write_text(json.dumps(_entity(name="also-fresh")) + "\n---\n" + json.dumps(document))
    with nothing_stored_changes(), pytest.raises(CommandError) as refusal:
        call_command("import_catalog", str(path))
    assert "Nothing imported" in str(refusal.value)
    assert message.split(": ", 1)[-1] in str(refusal.value)


def test_an_integration_kind_outside_backstages_rules_is_a_400(fuzz_world):
    url = f"{INTEGRATIONS}/{fuzz_world.integration.pk}"
    with nothing_stored_changes():
        for kind in ("1Component", "Com ponent", "x" * 64):
            response = send(fuzz_world.client, "patch", url, {"entity_kind": kind})
            refused(response, 400, "entity_kind")


# -- YAML ----------------------------------------------------------------------------------------


def billion_laughs() -> str:
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for index in range(1, 10):
        name, previous = chr(ord("a") + index), chr(ord("a") + index - 1)
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 10) + "]")
    return "\n".join(lines) + "\n"


HOSTILE_YAML = {
    "billion laughs": (
        "apiVersion: backstage.io/v1alpha1\nkind: Component\nspec:\n  owner: team-a\n  lol:\n"
        + "".join(f"    {line}\n" for line in billion_laughs().splitlines())
        + "metadata:\n  name: laughs\n  tags: *j\n",
        "more than 100000 values, counting each alias",
    ),
    "deep lists": (
        f"kind: Component\nmetadata: {{name: deep}}\nspec: {nested(DEEP, 'lists')}\n",
        "nested deeper than 64 levels",
    ),
    "deep maps": (
        "kind: Component\nmetadata:\n  name: deep\nspec: " + "{a: " * DEEP + "1" + "}" * DEEP,
        "nested deeper than 64 levels",
    ),
    "recursive alias": (
        "kind: Component\nmetadata: &m\n  name: loop\n  self: *m\n",
        "found a recursive alias",
    ),
}


@pytest.mark.parametrize("case", HOSTILE_YAML)
def test_import_catalog_refuses_hostile_yaml_with_the_line_and_imports_nothing(
    fuzz_world, tmp_path, case
):
    text, message = HOSTILE_YAML[case]
    path = tmp_path / "catalog-info.yaml"
    path.write_text(f"{json.dumps(_entity(name='fine'))}\n---\n{text}")
    with nothing_stored_changes(), pytest.raises(CommandError) as refusal:
        call_command("import_catalog", str(path))
    assert f"{path}: line " in str(refusal.value)
    assert message in str(refusal.value)


def test_a_repository_with_a_hostile_catalog_info_yaml_syncs_with_the_error_recorded(
    make_cloud_sandbox, settings
):
    """The YAML a sync reads comes from repositories Lantern does not control: over the real
    HTTP of the Bitbucket Cloud sandbox, each hostile file is recorded as an error on its
    repository, which is imported unenriched, and the rest of the sync goes on."""
    settings.LANTERN_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    cache.clear()  # the client-side request budgets
    server = make_cloud_sandbox(world(8, prs=0, commits=0))
    repos = [r for r in server.world.iter_repositories() if r.mainbranch]
    assert len(repos) > len(HOSTILE_YAML)
    for repo, (text, _) in zip(repos, HOSTILE_YAML.values(), strict=False):
        server.world.file_write(
            workspace=WS, slug=repo.slug, path="catalog-info.yaml", content=text
        )
    good = repos[len(HOSTILE_YAML)]
    server.world.file_write(
        workspace=WS,
        slug=good.slug,
        path="catalog-info.yaml",
        content="kind: Component\nmetadata: {name: x}\nspec: {owner: team-good}\n",
    )
    integration = make_integration(make_connector(server), secondary_kinds=[])

    sync_ok(integration)

    for repo, (_, message) in zip(repos, HOSTILE_YAML.values(), strict=False):
        record = DiscoveredEntity.objects.get(external_id=repo.uuid)
        assert message in record.data["catalog_info"]["error"], record.data["catalog_info"]
        entity = Entity.objects.get(name=repo.slug)
        assert entity.owner == "unknown"
    assert Entity.objects.get(name=good.slug).owner == "team-good"
    cache.clear()
