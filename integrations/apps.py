from django.apps import AppConfig
from django.conf import settings
from django.utils.module_loading import import_string

# The providers Lantern ships; ``LANTERN_EXTRA_PROVIDERS`` (comma-separated dotted class paths)
# registers more, e.g. a provider a test suite defines, in worker processes too.
BUILTIN_PROVIDERS: list[str] = [
    "integrations.providers.bitbucket_cloud.provider.BitbucketCloudProvider",
    "integrations.providers.bitbucket_dc.provider.BitbucketDataCenterProvider",
]


def providers_register() -> None:
    """Register every provider, explicitly, with the connector writes the services make for
    them (a provider never writes rows itself)."""
    from integrations.providers import registry
    from integrations.services import connector_mark_down, connector_tokens_store

    registry.connector_writes_register(
        registry.ConnectorWrites(store_tokens=connector_tokens_store, mark_down=connector_mark_down)
    )
    for dotted in [*BUILTIN_PROVIDERS, *settings.LANTERN_EXTRA_PROVIDERS]:
        registry.register(import_string(dotted))


class IntegrationsConfig(AppConfig):
    name = "integrations"
    verbose_name = "Integrations"

    def ready(self) -> None:
        from catalog.services import refresh_handler_register
        from integrations.handlers import entity_refresh_from_source

        providers_register()
        refresh_handler_register(entity_refresh_from_source)

        # Recommendations follow the catalog: entities created, renamed or deleted by anything
        # other than an integration's own sync recompute the advice they affect.
        from catalog.services import entity_changes_subscribe
        from integrations.tasks import recommendations_follow_catalog

        entity_changes_subscribe(recommendations_follow_catalog)

        from catalog.views import EntityTab, entity_tab_register

        entity_tab_register(
            EntityTab("pull-requests", "Pull requests", "integrations-entity:pull-requests")
        )
        entity_tab_register(EntityTab("commits", "Commits", "integrations-entity:commits"))
        entity_tab_register(EntityTab("writes", "Catalog file", "integrations-entity:writes"))

        from catalog.views import entity_notice_register
        from integrations.views import entity_notices_from_sources

        entity_notice_register(entity_notices_from_sources)

        # url locations of the catalog's locations API are read through their integration.
        from catalog.locations import location_source_register
        from integrations.locations import IntegrationLocations

        location_source_register(IntegrationLocations())
