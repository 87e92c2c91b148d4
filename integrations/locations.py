"""Catalog locations read through the integration they belong to.

The catalog's locations API reads a ``url`` location through whichever source owns the URL
(:mod:`catalog.locations`); this is the integrations app's: a URL in a repository of an enabled
integration — its workspace (Cloud) or its instance and projects (Data Center) — is read with
that integration's provider, so through its connector's credential, outbound guard, private CA
and request budget, and its entities get the integration's scope. A URL no integration owns is
not this source's, and one that points at an internal address is refused outright.
"""

import logging
from urllib.parse import urlsplit

from catalog.locations import (
    LocationAnalysis,
    LocationContent,
    LocationError,
    ScopeAllowed,
    location_not_found,
)
from integrations.choices import IntegrationState
from integrations.engine.imports import registration_document
from integrations.models import DiscoveredEntity, Integration
from integrations.providers import registry
from integrations.providers.base import (
    Provider,
    ProviderAuthError,
    ProviderError,
    RepoRecord,
    RepositoryLocation,
)
from integrations.providers.outbound import OutboundAddressError, address_forbidden, resolve

logger = logging.getLogger(__name__)


class IntegrationLocations:
    """The :class:`catalog.locations.LocationSource` of the integrations app."""

    def read(self, target: str, allowed: ScopeAllowed) -> LocationContent | None:
        owner = _owner(target, allowed)
        if owner is None:
            _internal_refuse(target)
            return None
        integration, where = owner
        if where.path is None:
            raise LocationError(
                f"{target} names the repository {where.repository}, not a file in it: point "
                "the location at its catalog-info.yaml (or analyze the repository URL)"
            )
        provider = registry.for_integration(integration)
        record = _repository(provider, integration, where)
        data = _file(provider, integration, record, where.ref, where.path)
        if data is None:
            raise location_not_found(
                f"{target}: {where.repository} has no file {where.path} at "
                f"{where.ref or record.data.get('default_branch')}"
            )
        return LocationContent(
            data=data, scope_id=integration.scope_id, source=f"integration:{integration.pk}"
        )

    def analyze(
        self, target: str, catalog_filename: str, allowed: ScopeAllowed
    ) -> LocationAnalysis | None:
        owner = _owner(target, allowed)
        if owner is None:
            _internal_refuse(target)
            return None
        integration, where = owner
        provider = registry.for_integration(integration)
        record = _repository(provider, integration, where)
        path = where.path or catalog_filename
        ref = where.ref or record.data.get("default_branch") or ""
        data = _file(provider, integration, record, ref, path) if ref else None
        if data is not None:
            url = target
            if where.path is None:
                url = provider.file_url(
                    connector=integration.connector,
                    target=integration.target or {},
                    repository=where.repository,
                    ref=ref,
                    path=path,
                )
            return LocationAnalysis(files=[(url, data)])
        if where.path is not None:
            raise location_not_found(f"{target}: {where.repository} has no file {path} at {ref}")
        return LocationAnalysis(generated=[_generated_entity(integration, record)])


def _owner(target: str, allowed: ScopeAllowed) -> tuple[Integration, RepositoryLocation] | None:
    """The enabled integration whose repositories ``target`` is in (of a scope ``allowed``
    accepts), and what it names."""
    integrations = Integration.objects.filter(state=IntegrationState.ENABLED).select_related(
        "connector"
    )
    for integration in integrations.order_by("pk"):
        if not allowed(integration.scope_id):
            continue
        try:
            provider_class = registry.get(integration.connector.provider)
        except registry.UnknownProvider:
            continue
        where = provider_class.repository_location(
            target, connector=integration.connector, target=integration.target or {}
        )
        if where is not None:
            return integration, where
    return None


def _internal_refuse(target: str) -> None:
    """A URL no integration owns that points inside the network is refused by name, without
    a connection (the catalog refuses any other unowned URL as such)."""
    parts = urlsplit(target)
    try:
        addresses = resolve(parts.hostname or "", parts.port or 443)
    except (OutboundAddressError, ValueError):
        return
    if any(address_forbidden(address) for address in addresses):
        raise LocationError(
            f"{parts.hostname} is an internal address and no integration owns it: a url "
            "location must name a file in a repository of a connected Bitbucket workspace or "
            "instance"
        )


def _repository(
    provider: Provider, integration: Integration, where: RepositoryLocation
) -> RepoRecord:
    try:
        record = provider.get_repository("", name=where.repository)
    except ProviderError as exc:
        raise _provider_refusal(exc, integration) from exc
    if record is None or not provider.in_target(record):
        raise location_not_found(
            f"{where.repository} is not a repository of the integration {integration.name}"
        )
    return record


def _file(
    provider: Provider, integration: Integration, record: RepoRecord, ref: str | None, path: str
) -> bytes | None:
    data = dict(record.data)
    if ref:
        data["default_branch"] = ref
    try:
        return provider.read_file(data, path)
    except ProviderError as exc:
        raise _provider_refusal(exc, integration) from exc


def _provider_refusal(exc: ProviderError, integration: Integration) -> LocationError:
    where = f"{exc.message} (integration {integration.name})"
    if exc.status in (404, 410):
        return location_not_found(where)
    if exc.status in (401, 403) or isinstance(exc, ProviderAuthError):
        return LocationError(where, status=403, name="NotAllowedError")
    if exc.status == 429 or exc.run_scoped:
        return LocationError(where, status=429, name="TooManyRequestsError")
    return LocationError(where, status=503, name="ServiceUnavailableError")


def _generated_entity(integration: Integration, record: RepoRecord) -> dict:
    """The entity registering the repository creates: its discovered record's when a sync
    found it, otherwise one made from the record just read."""
    discovered = DiscoveredEntity.objects.filter(
        integration=integration, external_id=record.external_id
    ).first() or DiscoveredEntity(
        integration=integration, external_id=record.external_id, name=record.name, data=record.data
    )
    return registration_document(integration=integration, discovered=discovered)
