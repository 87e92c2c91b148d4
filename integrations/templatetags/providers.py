"""``{{ connector.provider|provider_name }}``: the registry's display name of a provider key."""

from django import template

from integrations.providers import registry

register = template.Library()


@register.filter
def provider_name(key: str) -> str:
    return registry.display_name(key)
