from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    name = "integrations"
    verbose_name = "Integrations"

    def ready(self) -> None:
        from catalog.services import refresh_handler_register
        from integrations.handlers import entity_refresh_from_source
        from integrations.providers import builtin

        builtin.register_all()
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

        from catalog.views import entity_notice_register
        from integrations.views import entity_notices_from_sources

        entity_notice_register(entity_notices_from_sources)
