"""Fixtures and helpers of the security suite.

Endpoints are enumerated, not listed: API operations from the OpenAPI schema and UI routes from
the URL resolver, so an endpoint added later is checked (or fails the suite until classified)
instead of silently escaping it. The helpers fill their paths from one set of objects; the
fake-provider fixtures of ``tests/integrations`` are made available here to build them.

(The API fuzz and bad-input tests of this directory keep their fixtures in their own files; the
quick password hasher below applies to them as well.)
"""

import re
from dataclasses import dataclass
from functools import cache

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from drf_spectacular.generators import SchemaGenerator

from catalog.models import Entity, Location
from integrations.engine.imports import discovered_import
from integrations.models import Connector, ImportedEntity, Integration, WriteBackBatch
from tests.integrations.api.conftest import make_scope, member_of, synced  # noqa: F401
from tests.integrations.catalog_snapshot import snapshot
from tests.integrations.conftest import (  # noqa: F401
    connector,
    fake_provider,
    make_entities,
    make_integration,
    world,
)

MUTATING_METHODS = ("POST", "PUT", "PATCH", "DELETE")
EDIT = "integrations.edit_integration"

# The permission each mutating API operation needs; None for the reads Backstage's API takes
# as POST (a body instead of a long query string), which any signed-in user may make. A new
# mutating operation fails test_permission_matrix until it is added here.
API_PERMISSIONS: dict[str, str | None] = {
    "integrations_connectors_create": EDIT,
    "integrations_connectors_update": EDIT,
    "integrations_connectors_destroy": EDIT,
    "integrations_create": EDIT,
    "integrations_update": EDIT,
    "integrations_destroy": EDIT,
    "integrations_sync": EDIT,
    "integrations_suspend": EDIT,
    "integrations_resume": EDIT,
    "integrations_import": EDIT,
    "integrations_imported_unlink": EDIT,
    "integrations_write_back": "integrations.write_back",
    "catalog_entity_delete": "catalog.delete_entity",
    "catalog_entity_refresh": "catalog.change_entity",
    "catalog_entities_query_predicate": None,
    "catalog_entities_by_refs": None,
    "catalog_entity_facets_predicate": None,
    "catalog_validate_entity": None,
    "catalog_location_create": "catalog.add_location",
    "catalog_location_update": "catalog.change_location",
    "catalog_location_delete": "catalog.delete_location",
    "catalog_location_analyze": "catalog.add_location",
    "catalog_locations_query": None,
    "scorecards_create": "scorecards.add_scorecard",
    "scorecards_update": "scorecards.change_scorecard",
    "scorecards_destroy": "scorecards.delete_scorecard",
    "scorecards_checks_create": "scorecards.add_check",
    "scorecards_checks_update": "scorecards.change_check",
    "scorecards_checks_destroy": "scorecards.delete_check",
}
# The same for the UI routes that accept POST (by URL name).
UI_PERMISSIONS: dict[str, str] = {
    "integrations:wizard": EDIT,
    "integrations:configuration": EDIT,
    "integrations:sync": EDIT,
    "integrations:import": EDIT,
    "integrations:auto-import": EDIT,
    "integrations:unlink": EDIT,
    "integrations:suspend": EDIT,
    "integrations:resume": EDIT,
    "integrations:delete": EDIT,
    "integrations:connector-connect": EDIT,
    "integrations:connector-test": EDIT,
    "integrations:write-back-preview": "integrations.write_back",
    "integrations:write-back": "integrations.write_back",
    "catalog:entity-delete": "catalog.delete_entity",
}
UI_NAMESPACES = (
    "catalog",
    "integrations",
    "integrations-entity",
    "scorecards",
    "scorecards-entity",
)


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """The suite creates several users per test; the production hasher takes a third of a
    second for each."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# -- API operations, from the OpenAPI schema --------------------------------------------------


@dataclass(frozen=True)
class ApiOperation:
    method: str
    path: str  # the OpenAPI template: /api/integrations/{id}/sync
    operation_id: str

    def __str__(self) -> str:
        return self.operation_id


@cache
def api_operations() -> tuple[ApiOperation, ...]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return tuple(
        ApiOperation(method.upper(), path, operation["operationId"])
        for path, operations in sorted(schema["paths"].items())
        for method, operation in operations.items()
    )


def mutating_operations() -> list[ApiOperation]:
    return [op for op in api_operations() if op.method in MUTATING_METHODS]


# -- UI routes, from the URL resolver -----------------------------------------------------------


@dataclass(frozen=True)
class UiRoute:
    name: str  # namespaced: integrations:sync
    params: tuple[str, ...]

    def __str__(self) -> str:
        return self.name


@cache
def ui_routes() -> tuple[UiRoute, ...]:
    """Every named route of the catalog and integrations UIs (and the home page)."""

    def walk(patterns, prefix: str, namespace: str | None):
        for item in patterns:
            if isinstance(item, URLResolver):
                yield from walk(
                    item.url_patterns, prefix + str(item.pattern), item.namespace or namespace
                )
            elif isinstance(item, URLPattern) and item.name:
                yield namespace, item.name, prefix + str(item.pattern)

    routes = []
    for namespace, name, route in walk(get_resolver().url_patterns, "", None):
        if namespace in UI_NAMESPACES or (namespace is None and name == "home"):
            full_name = f"{namespace}:{name}" if namespace else name
            routes.append(UiRoute(full_name, tuple(re.findall(r"<(?:\w+:)?(\w+)>", route))))
    return tuple(routes)


# -- the objects paths are filled with ------------------------------------------------------------


@dataclass(frozen=True)
class PathObjects:
    """What an operation's path names: ``{id}`` is the connector under ``/connectors/``, else
    the integration."""

    connector: Connector
    integration: Integration
    imported: ImportedEntity
    entity: Entity
    location: Location

    @property
    def batch_pk(self) -> int:
        """The integration's latest write-back batch (0: none, a path that answers 404)."""
        batches = WriteBackBatch.objects.filter(integration=self.integration)
        return batches.values_list("pk", flat=True).first() or 0

    def values(self) -> dict[str, str]:
        return {
            "pk": str(self.integration.pk),
            "imported_pk": str(self.imported.pk),
            "batch_pk": str(self.batch_pk),
            "uid": str(self.entity.uid),
            "kind": self.entity.kind.lower(),
            "namespace": self.entity.namespace,
            "name": self.entity.name,
            "step": "setup",
        }

    def api_path(self, operation: ApiOperation) -> str:
        values = self.values()
        values["id"] = str(
            self.connector.pk if "/connectors/" in operation.path else self.integration.pk
        )
        if operation.path.startswith("/api/scorecards/"):
            from scorecards.models import Check, Scorecard

            model = Check if "/checks/" in operation.path else Scorecard
            found = model.objects.order_by("pk").first()
            extra = {"rule": {}} if model is Check else {}
            values["id"] = str((found or model.objects.create(name="matrix", **extra)).pk)
        if operation.path.startswith("/api/catalog/locations/"):
            location = (
                self.location
                or Location.objects.get_or_create(
                    type="url",
                    target="https://bitbucket.example.com/acme/x/src/main/catalog-info.yaml",
                )[0]
            )
            values["id"] = str(location.pk)
        return re.sub(r"\{(\w+)\}", lambda match: values[match.group(1)], operation.path)

    def ui_url(self, route: UiRoute) -> str:
        values = self.values()
        if route.name.startswith("integrations:connector-"):
            values["pk"] = str(self.connector.pk)
        if route.name.startswith("scorecards:"):
            from scorecards.models import Scorecard

            found = Scorecard.objects.order_by("pk").first()
            values["pk"] = str((found or Scorecard.objects.create(name="matrix")).pk)
        return reverse(route.name, kwargs={param: values[param] for param in route.params})


@pytest.fixture
def path_objects(synced) -> PathObjects:  # noqa: F811
    """An integration after a sync of three repositories, one of them imported; its connector;
    the catalog entity ``payments`` (which has no link, so deleting it breaks nothing) and the
    registered location it comes from."""
    integration = synced["integration"]
    imported = discovered_import(discovered=synced["discovered"]["billing"])
    location = Location.objects.create(
        type="url", target="https://bitbucket.example.com/acme/x/src/main/catalog-info.yaml"
    )
    Entity.objects.filter(pk=synced["entity"].pk).update(location=location)
    return PathObjects(integration.connector, integration, imported, synced["entity"], location)


def stored_state() -> dict:
    """The catalog row by row plus the integrations' and connectors' settings: what a refused
    request must leave exactly as it was."""
    return {
        "catalog": snapshot(),
        "integrations": list(Integration.objects.order_by("pk").values()),
        "connectors": list(Connector.objects.order_by("pk").values()),
        "locations": list(Location.objects.order_by("pk").values()),
    }
