import pytest

from catalog.models import Scope
from catalog.services import entities_upsert
from integrations.engine.sync import integration_sync
from integrations.models import DiscoveredEntity
from tests.integrations.conftest import component_doc


@pytest.mark.django_db
def test_correlation_only_suggests_entities_the_integrations_scope_may_touch(
    world, make_integration
):
    acme = Scope.objects.create(name="Acme", slug="acme", kind=Scope.Kind.ACCOUNT)
    other = Scope.objects.create(name="Other", slug="other", kind=Scope.Kind.ACCOUNT)
    world.add_repo("billing")
    world.add_repo("ledger")
    world.add_repo("search")
    entities_upsert(documents=[component_doc("billing")], scope=acme)
    entities_upsert(documents=[component_doc("ledger")], scope=other)
    entities_upsert(documents=[component_doc("search")])  # unscoped: visible everywhere
    integration = make_integration(scope=acme)
    integration_sync(integration_id=integration.pk, trigger="manual")
    suggestions = {
        row.name: (
            row.recommended_action,
            row.suggested_entity.name if row.suggested_entity else None,
        )
        for row in DiscoveredEntity.objects.select_related("suggested_entity")
    }
    assert suggestions == {
        "billing": ("merge", "billing"),
        # Not suggested (out of scope), but its name is taken: Register would fail.
        "ledger": ("conflict", None),
        "search": ("merge", "search"),
    }
