"""What the integrations app plugs into the catalog (the catalog never imports integrations)."""

from catalog.models import Entity
from integrations.choices import IntegrationState, LinkState, SyncTrigger
from integrations.models import ImportedEntity
from integrations.tasks import sync_enqueue


def entity_refresh_from_source(entity: Entity) -> bool:
    """``POST /api/catalog/refresh``: sync the integrations the entity is linked to."""
    integration_ids = set(
        ImportedEntity.objects.filter(
            entity=entity,
            state=LinkState.LINKED,
            integration__state=IntegrationState.ENABLED,
        ).values_list("integration_id", flat=True)
    )
    for integration_id in integration_ids:
        sync_enqueue(integration_id=integration_id, trigger=SyncTrigger.MANUAL)
    return bool(integration_ids)
