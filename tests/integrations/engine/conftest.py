"""Helpers for the sync-engine tests: run a sync, read what it wrote."""

import pytest

from catalog.models import Entity
from integrations.choices import SyncState
from integrations.engine.sync import integration_sync
from integrations.models import DiscoveredEntity, Integration, SyncRun


def sync(integration: Integration, *, trigger: str = "manual", **kwargs) -> SyncRun:
    return integration_sync(integration_id=integration.pk, trigger=trigger, **kwargs)


def sync_ok(integration: Integration, **kwargs) -> SyncRun:
    run = sync(integration, **kwargs)
    assert run.state == SyncState.SUCCEEDED, (run.state, run.error, run.message)
    return run


def discovered(integration: Integration, name: str) -> DiscoveredEntity:
    return DiscoveredEntity.objects.get(integration=integration, name=name)


def entity(ref_name: str, kind: str = "Component") -> Entity:
    return Entity.objects.get(kind=kind, namespace="default", name=ref_name)


@pytest.fixture
def engine_integration(make_integration):
    """An integration without secondary kinds (most engine tests do not need them)."""

    def make(name: str = "acme", **values):
        values.setdefault("secondary_kinds", [])
        return make_integration(name, **values)

    return make
