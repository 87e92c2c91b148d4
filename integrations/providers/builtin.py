"""The providers Lantern ships, registered explicitly at start-up with the connector writes the
engine hands them.

``LANTERN_EXTRA_PROVIDERS`` (comma-separated dotted class paths) registers more, e.g. a
provider a test suite defines, in worker processes too.
"""

from django.conf import settings
from django.utils.module_loading import import_string

from integrations.providers import registry

BUILTIN_PROVIDERS: list[str] = [
    "integrations.providers.bitbucket_cloud.provider.BitbucketCloudProvider",
    "integrations.providers.bitbucket_dc.provider.BitbucketDataCenterProvider",
]


def register_all() -> None:
    from integrations.services import connector_mark_down, connector_tokens_store

    registry.connector_writes_register(
        registry.ConnectorWrites(store_tokens=connector_tokens_store, mark_down=connector_mark_down)
    )
    for dotted in [*BUILTIN_PROVIDERS, *settings.LANTERN_EXTRA_PROVIDERS]:
        registry.register(import_string(dotted))
