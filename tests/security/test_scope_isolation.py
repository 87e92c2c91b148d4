"""Scope isolation: a member of one scope never sees another scope's entities, connectors,
integrations, discovered records, imports, runs, pull requests or commits — in any list, detail,
facet, count, search, by-refs or by-query answer, API or UI.

Two scopes, ``alpha`` and ``bravo``, hold the same shape of data; everything of bravo's carries
the word "bravo". Every read operation of the API (from the OpenAPI schema) and every page of
the UI (from the URL resolver) is requested by alpha's member — who holds every permission, so
only the scope can hide anything — and must not contain the word; the same request by bravo's
member must (so each check can fail). Bravo's objects by id or name answer 404 to alpha.
"""

import re
from dataclasses import dataclass

import pytest
from django.contrib.auth.models import AbstractUser
from django.db.models import Q
from django.test import Client
from rest_framework.test import APIClient

from catalog.models import Entity, Location, Scope
from catalog.services import entities_upsert
from integrations import services
from integrations.engine.imports import discovered_import
from integrations.engine.sync import integration_sync
from integrations.models import Connector, Integration, WebhookDelivery, WriteBack, WriteBackBatch
from tests.catalog.conftest import entity_document
from tests.integrations.fake_provider import WORLDS, World
from tests.security.conftest import (
    API_PERMISSIONS,
    UI_PERMISSIONS,
    ApiOperation,
    PathObjects,
    api_operations,
    ui_routes,
)

MARKER = b"bravo"
PERMISSIONS = sorted({*API_PERMISSIONS.values(), *UI_PERMISSIONS.values()} - {None})
FACETS = [
    "kind",
    "metadata.name",
    "metadata.tags",
    "spec.type",
    "spec.owner",
    "spec.system",
    "relations.ownedBy",
    "relations.dependsOn",
    "metadata.integration.integration_name",
]

# Each read operation of the API with the query strings (GET) or bodies (POST) to try; one
# added to the API fails test_every_read_operation_is_checked until it is listed here.
API_READS: dict[str, list[dict]] = {
    "catalog_entities_list": [
        {},
        {"filter": "metadata.tags=bravo-tag"},
        {"filter": "kind=component", "fields": "metadata.name,spec"},
        {"limit": "2"},
    ],
    "catalog_entities_query": [
        {},
        {"fullTextFilterTerm": "bravo"},
        {"filter": "relations.ownedBy=group:default/bravo-team"},
        {"limit": "1", "orderField": "metadata.name,asc"},
    ],
    "catalog_entities_query_predicate": [
        {"query": {"kind": "component"}},
        {"query": {"spec.type": "bravo-type"}},
        {"fullTextFilter": {"term": "bravo"}},
    ],
    "catalog_entities_by_refs": [
        {
            "entityRefs": [
                "component:default/alpha-ledger",
                "component:default/bravo-ledger",
                "group:default/bravo-team",
            ]
        }
    ],
    "catalog_entity_facets": [{"facet": FACETS}, {"facet": FACETS, "filter": "kind=component"}],
    "catalog_entity_facets_predicate": [{"facets": FACETS}, {"facets": FACETS, "query": {}}],
    "catalog_entity_by_name": [{}],
    "catalog_entity_ancestry": [{}],
    "catalog_entity_by_uid": [{}],
    "catalog_locations_list": [{}],
    "catalog_locations_query": [{}, {"query": {"target": {"$hasPrefix": "https://"}}}],
    "catalog_location_get": [{}],
    "catalog_location_by_entity": [{}],
    "integrations_list": [{}],
    "integrations_retrieve": [{}],
    "integrations_discovered_list": [{}, {"state": "discovered"}, {"search": "bravo"}],
    "integrations_imported_list": [{}, {"search": "bravo"}],
    "integrations_runs_list": [{}],
    "integrations_webhook_deliveries_list": [{}],
    "integrations_writes_list": [{}],
    "integrations_write_back_batch": [{}],
    "integrations_connectors_list": [{}],
    "integrations_connectors_retrieve": [{}],
    "scorecards_list": [{}],
    "scorecards_retrieve": [{}],
    "scorecards_checks_list": [{}],
    "scorecards_checks_retrieve": [{}],
    "scorecards_entity": [{}],
}
# Definitions of no scope (scorecards and checks): everyone reads the same object by the same
# id, so there is no other side's object to refuse; what a scorecard shows of entities is still
# checked both ways. A check shows nothing of any scope, so only its absence of bravo is.
GLOBAL_DEFINITIONS = {"scorecards_retrieve", "scorecards_checks_retrieve"}
NO_SCOPED_CONTENT = {"scorecards_checks_list", "scorecards_checks_retrieve"}
# Each page of the UI that answers GET, with the query strings to try.
UI_READS: dict[str, list[dict]] = {
    "home": [{}],
    "catalog:entity-list": [{}, {"q": "bravo"}, {"tag": "bravo-tag"}, {"sort": "-owner"}],
    "catalog:entity-picker": [{}, {"q": "bravo"}, {"kind": "group"}],
    "catalog:entity": [{}],
    "catalog:entity-relationships": [{}],
    "catalog:entity-yaml": [{}],
    "catalog:entity-yaml-download": [{}],
    "integrations-entity:pull-requests": [{}],
    "integrations-entity:commits": [{}],
    "integrations-entity:writes": [{}],
    "integrations:list": [{}],
    "integrations:connector-list": [{}],
    "integrations:connector-detail": [{}],
    "integrations:wizard": [{}],
    "integrations:detail": [{"state": "all"}, {"q": "bravo"}],
    "integrations:imported": [{"state": "all"}],
    "integrations:runs": [{}, {"fragment": "1"}],
    "integrations:webhooks": [{}],
    "integrations:configuration": [{}],
    "integrations:writes": [{}],
    "integrations:write-back-preview": [{}],
    "integrations:write-back-batch": [{}],
    "integrations:suspend": [{}],
    "integrations:resume": [{}],
    "integrations:delete": [{}],
    "scorecards-entity:scorecards": [{}],
    "scorecards:list": [{}],
    "scorecards:detail": [
        {},
        {"owner": "group:default/bravo-team"},
        {"level": "-"},
        {"page": "2"},
    ],
}
UI_REDIRECTS = {"integrations:wizard-start"}  # GET only resets the wizard and redirects
# UI pages of a definition of no scope (a scorecard): the same for both sides by the same id.
UI_GLOBAL_DEFINITIONS = {"scorecards:detail"}
# Route parameters naming an object (not the wizard's step): such pages 404 for another's.
OBJECT_PARAMS = {"pk", "imported_pk", "namespace", "kind", "name"}


@dataclass
class Side:
    """One scope's member and objects."""

    scope: Scope
    user: AbstractUser
    objects: PathObjects


def _documents(name: str) -> list[dict]:
    location = f"https://{name}.example/catalog-info.yaml"
    return [
        entity_document(
            "Component",
            f"{name}-ledger",
            spec={
                "type": f"{name}-type",
                "owner": f"group:default/{name}-team",
                "system": f"{name}-system",
                "dependsOn": [f"resource:default/{name}-db"],
            },
            tags=[f"{name}-tag"],
            annotations={"backstage.io/managed-by-location": f"url:{location}"},
        ),
        entity_document("Group", f"{name}-team"),
        entity_document("Location", f"{name}-location", spec={"type": "url", "target": location}),
    ]


@pytest.fixture
def sides(fake_provider, make_scope, member_of, make_user, request):
    """alpha and bravo: each a scope with three entities, a connector and an integration (a
    world of two repositories with pull requests and commits, synced, its ``-ledger`` record
    merged into the scope's ``-ledger`` entity), a run and a webhook delivery; a member holding
    every permission. Plus ``shared-portal``, an entity of no scope (everyone sees it)."""
    entities_upsert(documents=[entity_document("Component", "shared-portal")])
    result = {}
    for name in ("alpha", "bravo"):
        scope = make_scope(name)
        world = World(name=f"{request.node.nodeid}-{name}")
        WORLDS[world.name] = world
        world.add_repo(f"{name}-ledger", description=f"The {name} ledger", prs=2, commits=2)
        world.add_repo(f"{name}-repo", prs=1, commits=1)
        (ledger, *_) = entities_upsert(documents=_documents(name), scope=scope).entities
        location = Location.objects.create(
            type="url", target=f"https://{name}.example/catalog-info.yaml", scope=scope
        )
        Entity.objects.filter(pk=ledger.pk).update(location=location)
        ledger.location = location
        connector = services.connector_create(
            name=f"{name}-connector",
            provider="fake",
            auth_kind="none",
            config={"world": world.name},
            scope=scope,
        )
        integration = services.integration_create(
            connector=connector, name=f"{name}-integration", scope=scope
        )
        integration_sync(integration_id=integration.pk, trigger="manual")
        integration.runs.update(message=f"Listed the {name} world")
        imported = discovered_import(discovered=integration.discovered.get(name=f"{name}-ledger"))
        assert imported.entity == ledger and imported.action == "MERGE"
        WebhookDelivery.objects.create(
            integration=integration,
            delivery_id=f"{name}-delivery",
            event="repo:push",
            repository_name=f"{name}-repo",
            outcome="processed",
        )
        batch = WriteBackBatch.objects.create(integration=integration, mode="pull_request")
        WriteBack.objects.create(
            integration=integration,
            discovered=imported.discovered,
            entity=ledger,
            batch=batch,
            mode="pull_request",
            branch=f"lantern/catalog-info-{name}-ledger",
        )
        user = make_user(f"{name}-member", *PERMISSIONS)
        member_of(user, scope)
        objects = PathObjects(connector, integration, imported, ledger, location)
        result[name] = Side(scope, user, objects)
    _scorecard_with_failures()
    yield result
    for name in ("alpha", "bravo"):
        WORLDS.pop(f"{request.node.nodeid}-{name}", None)


def _scorecard_with_failures() -> None:
    """A scorecard every ledger fails (none is ``lifecycle: deprecated``), evaluated."""
    from scorecards import services as scorecard_services

    check = scorecard_services.check_create(
        name="deprecated", rule={"path": "entity.spec.lifecycle", "op": "==", "value": "deprecated"}
    )
    scorecard_services.scorecard_create(
        name="Sunset", filter="kind=component", checks=[{"check": check}]
    )
    scorecard_services.scorecard_results_refresh()


def _unseen(content: bytes, params: dict) -> bool:
    """No marker in ``content`` once what the request itself said (a search term shown back in
    the search box) is taken out."""
    for value in params.values():
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str):
                content = content.replace(text.encode(), b"")
    return MARKER not in content


def _visible_entities(side: Side) -> int:
    return Entity.objects.filter(Q(scope=side.scope) | Q(scope__isnull=True)).count()


# -- the enumerations ------------------------------------------------------------------------------


def read_operations() -> list[ApiOperation]:
    """GET operations, and the reads the catalog API takes as POST (validate-entity reads
    nothing stored)."""
    return [
        op
        for op in api_operations()
        if op.method == "GET"
        or (
            op.method == "POST"
            and API_PERMISSIONS.get(op.operation_id, "") is None
            and op.operation_id != "catalog_validate_entity"
        )
    ]


def test_every_read_operation_is_checked():
    assert {op.operation_id for op in read_operations()} == set(API_READS)


@pytest.mark.django_db
def test_every_readable_ui_page_is_checked(sides):
    objects = sides["alpha"].objects
    client = Client()
    client.force_login(sides["alpha"].user)
    readable = {
        route.name for route in ui_routes() if client.get(objects.ui_url(route)).status_code != 405
    }
    assert readable == set(UI_READS) | UI_REDIRECTS


# -- the API ---------------------------------------------------------------------------------------


def _api(user: AbstractUser, operation: ApiOperation, path: str, params: dict):
    client = APIClient()
    client.force_authenticate(user)
    if operation.method == "GET":
        return client.get(path, params)
    return client.post(path, params, format="json")


@pytest.mark.django_db
@pytest.mark.parametrize("operation", read_operations(), ids=str)
def test_api_reads_show_nothing_of_another_scope(operation, sides, subtests):
    alpha, bravo = sides["alpha"], sides["bravo"]
    addressed = "{" in operation.path and operation.operation_id not in GLOBAL_DEFINITIONS
    for params in API_READS[operation.operation_id]:
        with subtests.test(params=params):
            own = _api(alpha.user, operation, alpha.objects.api_path(operation), params)
            assert own.status_code == 200, own.content
            assert _unseen(own.content, params)
            theirs = _api(bravo.user, operation, bravo.objects.api_path(operation), params)
            assert theirs.status_code == 200, theirs.content
            if operation.operation_id not in NO_SCOPED_CONTENT:
                assert MARKER in theirs.content  # the same request shows bravo's to bravo
            if addressed:
                other = _api(alpha.user, operation, bravo.objects.api_path(operation), params)
                assert other.status_code == 404, other.content
                assert other.json()["error"]["name"] == "NotFoundError"


@pytest.mark.django_db
def test_api_totals_and_facet_counts_cover_only_the_users_scopes(sides, django_user_model):
    alpha = sides["alpha"]
    client = APIClient()
    client.force_authenticate(alpha.user)
    visible = _visible_entities(alpha)
    assert visible < Entity.objects.count()
    assert client.get("/api/catalog/entities/by-query").json()["totalItems"] == visible
    assert len(client.get("/api/catalog/entities").json()) == visible
    kinds = client.get("/api/catalog/entity-facets", {"facet": "kind"}).json()["facets"]["kind"]
    assert sum(item["count"] for item in kinds) == visible
    assert client.get("/api/integrations/").json()["count"] == 1
    assert client.get("/api/integrations/connectors").json()["count"] == 1
    admin = django_user_model.objects.create_superuser("root", password="pw-unused-123")
    client.force_authenticate(admin)
    assert client.get("/api/catalog/entities/by-query").json()["totalItems"] == (
        Entity.objects.count()
    )


def _shape(response) -> tuple:
    """Status and error names, with which object was asked for left out."""
    body = response.json()
    if "results" in body:
        return response.status_code, [
            (item["ok"], re.sub(r"entity .*", "entity …", item.get("error", "")))
            for item in body["results"]
        ]
    return response.status_code, body.get("error", {}).get("name")


@pytest.mark.django_db
def test_api_writes_treat_another_scopes_objects_as_missing(sides, subtests):
    """With every permission, a write aimed at bravo's object answers exactly as one aimed at
    an object that does not exist, and changes nothing of bravo's."""
    alpha, bravo = sides["alpha"], sides["bravo"]
    client = APIClient()
    client.force_authenticate(alpha.user)
    theirs = bravo.objects
    own = f"/api/integrations/{alpha.objects.integration.pk}/import"
    discovered_id = alpha.objects.integration.discovered.get(name="alpha-repo").pk
    requests = [  # (method, path, body) aimed at bravo's object, then at a missing one
        (
            ("delete", f"/api/catalog/entities/by-uid/{theirs.entity.uid}", {}),
            ("delete", "/api/catalog/entities/by-uid/00000000-0000-0000-0000-000000000000", {}),
        ),
        (
            ("post", "/api/catalog/refresh", {"entityRef": "component:default/bravo-ledger"}),
            ("post", "/api/catalog/refresh", {"entityRef": "component:default/missing"}),
        ),
        (
            ("patch", f"/api/integrations/{theirs.integration.pk}", {"description": "x"}),
            ("patch", "/api/integrations/999999", {"description": "x"}),
        ),
        (
            ("post", f"/api/integrations/{theirs.integration.pk}/sync", {}),
            ("post", "/api/integrations/999999/sync", {}),
        ),
        (
            ("patch", f"/api/integrations/connectors/{theirs.connector.pk}", {"name": "x"}),
            ("patch", "/api/integrations/connectors/999999", {"name": "x"}),
        ),
        (
            ("post", own, {"discovered_id": discovered_id, "entity_ref": "bravo-ledger"}),
            ("post", own, {"discovered_id": discovered_id, "entity_ref": "missing"}),
        ),
        (
            ("post", own, {"discovered_id": discovered_id, "entity_id": theirs.entity.pk}),
            ("post", own, {"discovered_id": discovered_id, "entity_id": 999999}),
        ),
        (
            ("post", "/api/integrations/", {"name": "x", "connector": theirs.connector.pk}),
            ("post", "/api/integrations/", {"name": "x", "connector": 999999}),
        ),
    ]
    etag = Entity.objects.get(pk=theirs.entity.pk).etag
    for (method, path, body), (missing_method, missing_path, missing_body) in requests:
        with subtests.test(method=method, path=path, body=body):
            response = getattr(client, method)(path, body, format="json")
            missing = getattr(client, missing_method)(missing_path, missing_body, format="json")
            assert response.status_code in (400, 404), response.content
            assert _shape(response) == _shape(missing)
    assert Entity.objects.get(pk=theirs.entity.pk).etag == etag
    assert Integration.objects.get(pk=theirs.integration.pk).description == ""
    assert Connector.objects.get(pk=theirs.connector.pk).name == "bravo-connector"
    assert theirs.integration.runs.count() == 1
    assert not theirs.entity.imports.exclude(integration=theirs.integration).exists()


# -- the UI ----------------------------------------------------------------------------------------


def _ui(user: AbstractUser, url: str, params: dict):
    client = Client()
    client.force_login(user)
    return client.get(url, params)


@pytest.mark.django_db
@pytest.mark.parametrize("name", sorted(UI_READS))
def test_ui_pages_show_nothing_of_another_scope(name, sides, subtests):
    alpha, bravo = sides["alpha"], sides["bravo"]
    route = next(route for route in ui_routes() if route.name == name)
    for params in UI_READS[name]:
        with subtests.test(params=params):
            own = _ui(alpha.user, alpha.objects.ui_url(route), params)
            assert own.status_code == 200
            assert _unseen(own.content, params)
            if name == "home":  # counts per kind, no names: compared below
                continue
            theirs = _ui(bravo.user, bravo.objects.ui_url(route), params)
            assert theirs.status_code == 200
            assert MARKER in theirs.content
            if set(route.params) & OBJECT_PARAMS and name not in UI_GLOBAL_DEFINITIONS:
                assert _ui(alpha.user, bravo.objects.ui_url(route), params).status_code == 404


@pytest.mark.django_db
def test_ui_counts_cover_only_the_users_scopes(sides):
    alpha = sides["alpha"]
    visible = _visible_entities(alpha)
    listing = _ui(alpha.user, "/catalog/", {})
    assert listing.context["total"] == visible
    home = _ui(alpha.user, "/", {})
    assert sum(row["count"] for row in home.context["kinds"]) == visible
    kinds = {row["kind"]: row["count"] for row in home.context["kinds"]}
    assert kinds["Component"] == 2  # alpha-ledger and shared-portal, not bravo-ledger
    scorecards = _ui(alpha.user, "/scorecards/", {})
    (sunset,) = scorecards.context["rows"]
    assert sunset["bar"].total == 2  # the same two components, both failing: no level
    assert [(s.label, s.count) for s in sunset["bar"].segments] == [("No level", 2)]
    integrations = _ui(alpha.user, "/integrations/", {})
    assert [i.name for i in integrations.context["integrations"]] == ["alpha-integration"]


# -- what crosses scopes through an entity everyone sees -------------------------------------------


@pytest.mark.django_db
def test_pull_requests_and_commits_of_another_scopes_integration_stay_hidden(sides):
    """An integration may merge into an entity of no scope; the pull requests and commits it
    brings are its scope's records, not the entity's."""
    bravo = sides["bravo"]
    integration = bravo.objects.integration
    world = WORLDS[integration.connector.config["world"]]
    world.add_repo("shared-portal", prs=2, commits=2)
    integration_sync(integration_id=integration.pk, trigger="manual")
    discovered_import(discovered=integration.discovered.get(name="shared-portal"))
    for tab in ("pull-requests", "commits"):
        url = f"/catalog/default/component/shared-portal/{tab}"
        assert len(_ui(bravo.user, url, {}).context["page"].object_list) == 2
        assert len(_ui(sides["alpha"].user, url, {}).context["page"].object_list) == 0


@pytest.mark.django_db
def test_entities_registered_by_a_scoped_integration_belong_to_its_scope(sides):
    bravo = sides["bravo"]
    registered = discovered_import(
        discovered=bravo.objects.integration.discovered.get(name="bravo-repo")
    )
    assert registered.action == "REGISTER"
    client = APIClient()
    client.force_authenticate(sides["alpha"].user)
    names = [e["metadata"]["name"] for e in client.get("/api/catalog/entities").json()]
    assert "bravo-repo" not in names
