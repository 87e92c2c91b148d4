"""The example provider registered for a test, over an in-process source."""

import json

import pytest

from integrations.models import Connector, Integration
from integrations.providers import registry
from tests.integrations.example_provider import provider as example
from tests.integrations.example_provider.source import generated
from tests.integrations.providers.contract import ContractSource, Delivery


@pytest.fixture
def example_provider():
    registry.register(example.ExampleProvider)
    yield example.ExampleProvider
    registry.unregister(example.ExampleProvider.key)


@pytest.fixture
def example_source(example_provider):
    source = generated()
    example.SOURCES["contract"] = source
    target = {"collection": "alpha"}

    def connector(api_key: str) -> Connector:
        made = Connector(
            name="example",
            provider="example",
            auth_kind=example.API_KEY.key,
            config={"source": "contract", "account": "ada"},
        )
        made.secrets = {"api_key": api_key}
        return made

    def build(api_key: str, **options):
        made = connector(api_key)
        integration = Integration(connector=made, provider="example", target=target)
        return registry.build(example_provider, connector=made, integration=integration, **options)

    repos = source.collections["alpha"]
    with_file = repos[0]

    def push(event: str, repository: str | None) -> Delivery:
        body = json.dumps({"repository": {"id": repository, "name": "x"}}).encode()
        return Delivery({"X-Example-Event": event, "X-Example-Delivery": "d-1"}, body, repository)

    yield ContractSource(
        provider=lambda **options: build(source.api_key, **options),
        refused=lambda: build("wrong"),
        repositories={r.id: r.name for r in repos},
        pull_requests=(repos[1].id, {pr["id"] for pr in repos[1].pull_requests}),
        commits=(
            repos[2].id,
            [c["hash"] for c in sorted(repos[2].commits, key=lambda c: c["date"], reverse=True)],
        ),
        file=(with_file.id, "catalog-info.yaml", with_file.files["catalog-info.yaml"]),
        faults=lambda kinds: source.faults.extend(kinds),
        push=push("push", repos[3].id),
        ignored=push("ping", None),
        target=target,
    )
    example.SOURCES.pop("contract", None)
