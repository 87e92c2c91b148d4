"""Fixtures of the integrations API tests: clients with and without the edit permission, a
synced integration with discovered records, and a provider whose connectors hold secrets."""

import pytest
from rest_framework.test import APIClient

from catalog.models import Scope, ScopeMembership
from integrations.engine.sync import integration_sync
from integrations.providers import registry
from integrations.providers.bitbucket_cloud import provider as cloud
from tests.integrations.conftest import component_doc
from tests.integrations.fake_provider import FakeProvider

API = "/api/integrations"
EDIT = "integrations.edit_integration"


class TokenFakeProvider(FakeProvider):
    """The fake provider with token auth, so its connectors carry secrets."""

    key = "fake_token"
    name = "Fake (token)"
    auth_kinds = (cloud.API_TOKEN, cloud.APP_PASSWORD)


@pytest.fixture
def token_provider():
    registry.register(TokenFakeProvider)
    yield TokenFakeProvider
    registry.unregister(TokenFakeProvider.key)


@pytest.fixture
def editor(make_user):
    return make_user("editor", EDIT)


@pytest.fixture
def editor_client(editor, bearer_client) -> APIClient:
    return bearer_client(editor)


@pytest.fixture
def synced(world, make_integration, make_entities):
    """An integration after one sync of three repositories; ``payments`` matches a catalog
    entity (recommended merge), the other two are new (recommended register)."""
    world.add_repo("billing", description="Bills")
    world.add_repo("payments", description="Pays")
    world.add_repo("search", description="Finds")
    (payments,) = make_entities(component_doc("payments"))
    integration = make_integration()
    integration_sync(integration_id=integration.pk, trigger="manual")
    integration.refresh_from_db()
    discovered = {d.name: d for d in integration.discovered.all()}
    return {"integration": integration, "discovered": discovered, "entity": payments}


@pytest.fixture
def make_scope(db):
    def make(path: str) -> Scope:
        parent = None
        kinds = [Scope.Kind.ACCOUNT, Scope.Kind.ORG, Scope.Kind.PROJECT]
        for depth, slug in enumerate(path.split("/")):
            parent, _ = Scope.objects.get_or_create(
                slug=slug, parent=parent, defaults={"name": slug, "kind": kinds[depth]}
            )
        return parent

    return make


@pytest.fixture
def member_of():
    def join(user, scope: Scope) -> None:
        ScopeMembership.objects.create(user=user, scope=scope)

    return join
