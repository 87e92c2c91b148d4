"""Fixtures shared by the API fuzzing and bad-input tests: a seeded catalog and integration that
detail endpoints can hit, a bearer client of a user holding every permission, and the API error
shape.

Import the fixtures where they are wanted (``from tests.security.fuzz_helpers import
fuzz_world``); the data comes from the in-test fake provider, so nothing reaches a network.
"""

from dataclasses import dataclass

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from catalog.models import Entity
from catalog.services import entities_upsert
from integrations import services
from integrations.choices import WebhookOutcome
from integrations.engine.sync import integration_sync
from integrations.models import (
    Connector,
    CorrelationRule,
    DiscoveredEntity,
    FieldMapping,
    ImportedEntity,
    Integration,
    WebhookDelivery,
)
from integrations.providers import registry
from portal.models import ApiToken
from tests.integrations.catalog_snapshot import snapshot as catalog_snapshot
from tests.integrations.fake_provider import WORLDS, FakeProvider, World

WORLD_NAME = "security-fuzz"


def component(name: str, **spec) -> dict:
    return {
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "Component",
        "metadata": {
            "name": name,
            "tags": ["python"],
            "annotations": {"backstage.io/managed-by-location": "url:https://example.com/c.yaml"},
        },
        "spec": {"type": "service", "lifecycle": "production", "owner": "team-a", **spec},
    }


SEED_DOCUMENTS = [
    component("payments", system="money", dependsOn=["component:default/ledger"]),
    component("ledger", system="money"),
    {
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "System",
        "metadata": {"name": "money", "description": "Moves money"},
        "spec": {"owner": "team-a"},
    },
    {
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "Group",
        "metadata": {"name": "team-a"},
        "spec": {"type": "team", "children": []},
    },
    {
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "Location",
        "metadata": {"name": "catalog"},
        "spec": {"type": "url", "target": "https://example.com/c.yaml"},
    },
]


@dataclass
class FuzzWorld:
    """What the seeded database holds, for path parameters and before/after comparisons."""

    client: APIClient
    token: str
    entity: Entity
    connector: Connector
    spare_connector: Connector
    integration: Integration
    imported: ImportedEntity

    @property
    def authorization(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture
def fuzz_world(db) -> FuzzWorld:
    """Entities with relations and a location, a fake-provider connector and integration after
    one sync (discovered records, an import, a run), a webhook delivery, a spare connector that
    no integration uses, and a superuser's bearer client."""
    registry.register(FakeProvider)
    world = World()
    for name in ("payments", "search", "billing"):
        world.add_repo(name, description=f"The {name} service")
    WORLDS[WORLD_NAME] = world
    try:
        entities_upsert(documents=SEED_DOCUMENTS)
        connector = services.connector_create(
            name="fake", provider="fake", auth_kind="none", config={"world": WORLD_NAME}
        )
        spare = services.connector_create(
            name="spare", provider="fake", auth_kind="none", config={"world": WORLD_NAME}
        )
        integration = services.integration_create(
            connector=connector, name="acme", auto_import=True, secondary_kinds=[]
        )
        integration_sync(integration_id=integration.pk, trigger="manual")
        WebhookDelivery.objects.create(
            integration=integration,
            delivery_id="delivery-1",
            event="repo:push",
            repository_name="payments",
            outcome=WebhookOutcome.PROCESSED,
        )
        user = get_user_model().objects.create_superuser("root", password="pw-unused-123")
        _, token = ApiToken.objects.issue(user=user, name="fuzz")
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        yield FuzzWorld(
            client=client,
            token=token,
            entity=Entity.objects.get(name="payments"),
            connector=connector,
            spare_connector=spare,
            integration=integration,
            imported=ImportedEntity.objects.filter(integration=integration).first(),
        )
    finally:
        WORLDS.pop(WORLD_NAME, None)
        registry.unregister(FakeProvider.key)


def stored_state() -> dict:
    """Everything a bad request could change: the catalog and integration rows by content."""
    return {
        "catalog": catalog_snapshot(),
        "connectors": sorted(
            Connector.objects.values_list(
                "name", "provider", "auth_kind", "base_url", "config", "secrets_encrypted", "ca_pem"
            )
        ),
        "integrations": sorted(
            (i.name, i.description, i.labels, i.target, i.registration, i.entity_kind, i.state)
            for i in Integration.objects.all()
        ),
        "rules": sorted(
            CorrelationRule.objects.values_list(
                "integration__name", "ingested_path", "catalog_path", "operator", "position"
            )
        ),
        "mappings": sorted(
            FieldMapping.objects.values_list(
                "integration__name", "catalog_path", "expression", "position"
            )
        ),
        "discovered": DiscoveredEntity.objects.count(),
    }


def error_of(response) -> dict:
    """The Backstage error object of an API response (``{error: {name, message}, ...}``)."""
    body = response.json()
    assert set(body) >= {"error", "request", "response"}, body
    assert body["response"]["statusCode"] == response.status_code
    return body["error"]
