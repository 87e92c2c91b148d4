"""The explicit provider registry: ``register(ProviderClass)`` from ``IntegrationsConfig.ready()``.

The engine reaches providers only through here, never by importing a provider module.
"""

from collections.abc import Callable
from dataclasses import dataclass

from integrations.providers.base import AuthKindSpec, Provider, TargetField

_providers: dict[str, type[Provider]] = {}


@dataclass(frozen=True)
class ConnectorWrites:
    """What a provider may change of its connector, as the engine writes it: renewed OAuth
    tokens (``store_tokens(connector=, tokens=)``) and a credential that stopped working
    (``mark_down(connector=, message=)``). Providers get them bound to their connector."""

    store_tokens: Callable[..., None]
    mark_down: Callable[..., None]


_writes: ConnectorWrites | None = None


def connector_writes_register(writes: ConnectorWrites) -> None:
    global _writes
    _writes = writes


class UnknownProvider(LookupError):
    pass


class UnknownAuthKind(LookupError):
    pass


def register(provider_class: type[Provider]) -> type[Provider]:
    """Register a provider; refused when its key is taken, or when one of its auth kinds has
    the key of a different kind another provider declares (a provider may share another's
    spec, the same object)."""
    key = provider_class.key
    existing = _providers.get(key)
    if existing is not None and existing is not provider_class:
        raise ValueError(f"A provider with key {key!r} is already registered ({existing!r})")
    known = auth_kinds()
    for spec in provider_class.auth_kinds:
        other = known.get(spec.key)
        if other is not None and other is not spec:
            raise ValueError(f"{provider_class.name} redeclares the auth kind {spec.key!r}")
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


def display_name(key: str) -> str:
    """What the UI calls a provider; a key no longer registered (a removed plugin) shows as
    itself rather than failing the page."""
    provider_class = _providers.get(key)
    return provider_class.name if provider_class else key


def all_providers() -> dict[str, type[Provider]]:
    return dict(_providers)


def auth_kinds() -> dict[str, AuthKindSpec]:
    """Every auth kind the registered providers declare, by key, in registration order."""
    specs: dict[str, AuthKindSpec] = {}
    for provider_class in _providers.values():
        for spec in provider_class.auth_kinds:
            specs.setdefault(spec.key, spec)
    return specs


def auth_kind(key: str) -> AuthKindSpec:
    try:
        return auth_kinds()[key]
    except KeyError:
        raise UnknownAuthKind(f"Unknown auth kind {key!r}") from None


def target_fields() -> dict[str, TargetField]:
    """Every target field the registered providers declare, by name, in registration order (a
    field two providers share, such as Bitbucket's projects, once)."""
    fields: dict[str, TargetField] = {}
    for provider_class in _providers.values():
        for target_field in provider_class.target_fields:
            fields.setdefault(target_field.name, target_field)
    return fields


def auth_kind_choices() -> list[tuple[str, str]]:
    """``(key, label)`` of every registered auth kind, for form and serializer choices."""
    return [(spec.key, spec.label) for spec in auth_kinds().values()]


def build(provider_class: type[Provider], *, connector, integration=None, **options) -> Provider:
    """A provider instance over ``connector``, handed the engine's connector writes."""
    if _writes is not None:
        options.setdefault(
            "store_tokens", lambda tokens: _writes.store_tokens(connector=connector, tokens=tokens)
        )
        options.setdefault(
            "mark_down", lambda message: _writes.mark_down(connector=connector, message=message)
        )
    return provider_class(connector=connector, integration=integration, **options)


def for_integration(integration) -> Provider:
    provider_class = get(integration.connector.provider)
    return build(provider_class, connector=integration.connector, integration=integration)
