from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "catalog"
    verbose_name = "Software catalog"

    def ready(self) -> None:
        # A page of entities decodes hundreds of small json values; psycopg's default (the json
        # module) spends most of a list request doing so.
        from psycopg.types.json import set_json_loads

        from catalog.models import json_loads

        set_json_loads(json_loads)

        from catalog.services import refresh_handler_register
        from catalog.tasks import entity_refresh_from_location

        refresh_handler_register(entity_refresh_from_location)

        from catalog.views import entity_notice_register, entity_notices_from_location

        entity_notice_register(entity_notices_from_location)
