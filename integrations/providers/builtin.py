"""The providers Lantern ships, registered explicitly at start-up."""

from integrations.providers import registry

BUILTIN_PROVIDERS: list[type] = []


def register_all() -> None:
    for provider_class in BUILTIN_PROVIDERS:
        registry.register(provider_class)
