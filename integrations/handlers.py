"""What the integrations app plugs into the catalog (the catalog never imports integrations)."""

from catalog.models import Entity
from integrations import services
from integrations.choices import IntegrationState, LinkState
from integrations.models import ImportedEntity, Integration


def entity_refresh_from_source(entity: Entity) -> bool:
    """``POST /api/catalog/refresh``: sync the integrations the entity is linked to."""
    linked = ImportedEntity.objects.filter(entity=entity, state=LinkState.LINKED)
    integrations = list(
        Integration.objects.filter(
            pk__in=linked.values("integration_id"), state=IntegrationState.ENABLED
        )
    )
    for integration in integrations:
        services.integration_sync_request(integration=integration)
    return bool(integrations)
