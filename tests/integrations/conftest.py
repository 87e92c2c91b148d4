import pytest

from catalog.services import entities_upsert
from integrations import services
from integrations.providers import registry
from tests.integrations.fake_provider import WORLDS, FakeProvider, World


@pytest.fixture
def fake_provider():
    registry.register(FakeProvider)
    yield FakeProvider
    registry.unregister(FakeProvider.key)


@pytest.fixture
def world(fake_provider, request) -> World:
    world = World()
    WORLDS[request.node.nodeid] = world
    world.name = request.node.nodeid
    yield world
    WORLDS.pop(request.node.nodeid, None)


@pytest.fixture
def connector(db, world):
    return services.connector_create(
        name="fake", provider="fake", auth_kind="none", config={"world": world.name}
    )


@pytest.fixture
def make_integration(connector):
    def make(name: str = "acme", **values):
        return services.integration_create(connector=connector, name=name, **values)

    return make


def component_doc(name: str, **spec) -> dict:
    return {
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "Component",
        "metadata": {"name": name, **spec.pop("metadata", {})},
        "spec": {"type": "service", "lifecycle": "production", "owner": "team-a", **spec},
    }


@pytest.fixture
def make_entities(db):
    def make(*documents: dict):
        return entities_upsert(documents=list(documents)).entities

    return make
