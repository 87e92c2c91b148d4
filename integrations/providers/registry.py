"""The explicit provider registry: ``register(ProviderClass)`` from ``IntegrationsConfig.ready()``.

The engine reaches providers only through here, never by importing a provider module.
"""

from integrations.providers.base import Provider

_providers: dict[str, type[Provider]] = {}


class UnknownProvider(LookupError):
    pass


def register(provider_class: type[Provider]) -> type[Provider]:
    key = provider_class.key
    existing = _providers.get(key)
    if existing is not None and existing is not provider_class:
        raise ValueError(f"A provider with key {key!r} is already registered ({existing!r})")
    _providers[key] = provider_class
    return provider_class


def unregister(key: str) -> None:
    _providers.pop(key, None)


def get(key: str) -> type[Provider]:
    try:
        return _providers[key]
    except KeyError:
        known = ", ".join(sorted(_providers)) or "none"
        raise UnknownProvider(f"Unknown provider {key!r} (registered: {known})") from None


def all_providers() -> dict[str, type[Provider]]:
    return dict(_providers)


def for_integration(integration) -> Provider:
    provider_class = get(integration.connector.provider)
    return provider_class(connector=integration.connector, integration=integration)
