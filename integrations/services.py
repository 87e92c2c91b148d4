"""The integrations app's one write door: the UI, the API, the admin, ``apply_config`` and the
tasks write connectors, integrations, imports and links through these functions, and reach the
sync engine only through them. Validated in one place; every error names the field it is
about."""

import logging
import secrets as secrets_module
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from catalog.validation import KIND_RE
from integrations import choices
from integrations.engine import claims, discovery, health, targeted
from integrations.engine import imports as engine_imports
from integrations.engine import sync as engine_sync
from integrations.engine import writeback as engine_writeback
from integrations.engine.imports import ImportRequest, entities_ingested_rebuild
from integrations.engine.mapping import ExpressionError, catalog_path_parts, compile_expression
from integrations.models import (
    Connector,
    CorrelationRule,
    DiscoveredEntity,
    FieldMapping,
    ImportedEntity,
    Integration,
    SyncRun,
    WebhookSubscription,
    WriteBack,
    WriteBackBatch,
)
from integrations.providers import budget, registry
from integrations.providers.base import ProbeResult, ProviderAuthError, ProviderError
from integrations.providers.http import NETWORK_CONFIG_KEYS, timeout_validate
from integrations.providers.oauth import pkce_pair
from integrations.providers.outbound import proxy_url_validate

logger = logging.getLogger(__name__)

DEFAULT_CORRELATION = [{"ingested": "name", "catalog": "metadata.name", "operator": "equals"}]
DEFAULT_SECONDARY_KINDS = [choices.SecondaryKind.PULL_REQUESTS, choices.SecondaryKind.COMMITS]

# Integration columns a caller may set (the admin form and the API serializer list these too).
INTEGRATION_SETTINGS = (
    "name",
    "description",
    "labels",
    "scope",
    "connector",
    "target",
    "registration",
    "entity_kind",
    "entity_type",
    "secondary_kinds",
    "update_frequency",
    "start_date",
    "auto_import",
    "state",
    "vanish_threshold",
    "full_sync_interval",
    "writeback_mode",
)
# What integration_create / integration_update accept: the columns plus rules and mappings.
INTEGRATION_FIELDS = {*INTEGRATION_SETTINGS, "correlation", "field_mappings"}


@dataclass(frozen=True)
class RuleInput:
    ingested: str
    catalog: str
    operator: str = choices.Operator.EQUALS


def provider_class_get(key: str, field: str = "provider"):
    """The registered, enabled provider class for ``key``; a ValidationError on ``field``."""
    try:
        provider_class = registry.get(key)
    except registry.UnknownProvider as exc:
        raise ValidationError({field: str(exc)}) from exc
    enabled, why = provider_class.is_enabled()
    if not enabled:
        raise ValidationError({field: why})
    return provider_class


def expression_validate(expression: Any, field: str) -> str:
    try:
        compile_expression(expression)
    except ExpressionError as exc:
        raise ValidationError({field: str(exc)}) from exc
    return expression


def catalog_path_validate(path: str, field: str) -> str:
    try:
        catalog_path_parts(path)
    except ExpressionError as exc:
        raise ValidationError({field: str(exc)}) from exc
    return path


def correlation_rules_validate(rules: Any) -> list[RuleInput]:
    if not isinstance(rules, list):
        raise ValidationError({"correlation": "must be a list of rules"})
    result = []
    for index, rule in enumerate(rules):
        where = f"correlation[{index}]"
        if isinstance(rule, RuleInput):
            rule = {"ingested": rule.ingested, "catalog": rule.catalog, "operator": rule.operator}
        if not isinstance(rule, dict):
            raise ValidationError({where: "must be a mapping {ingested, catalog, operator}"})
        unknown = set(rule) - {"ingested", "catalog", "operator"}
        if unknown:
            raise ValidationError({where: f"unknown keys: {', '.join(sorted(unknown))}"})
        operator = rule.get("operator", choices.Operator.EQUALS)
        if operator not in choices.Operator.values:
            raise ValidationError({f"{where}.operator": "must be equals or contains"})
        result.append(
            RuleInput(
                expression_validate(rule.get("ingested"), f"{where}.ingested"),
                expression_validate(rule.get("catalog"), f"{where}.catalog"),
                operator,
            )
        )
    return result


def field_mappings_validate(mappings: Any) -> dict[str, str]:
    if not isinstance(mappings, dict):
        raise ValidationError({"field_mappings": "must be a mapping of catalog path: expression"})
    for path, expression in mappings.items():
        catalog_path_validate(path, f"field_mappings.{path}")
        expression_validate(expression, f"field_mappings.{path}")
    return dict(mappings)


def _validate_settings(values: dict, *, instance: Integration | None) -> None:
    unknown = set(values) - INTEGRATION_FIELDS
    if unknown:
        raise ValidationError({key: "unknown setting" for key in sorted(unknown)})
    errors: dict[str, str] = {}
    registration = values.get(
        "registration",
        instance.registration if instance else choices.Registration.REGISTER_AND_MERGE,
    )
    if registration not in choices.Registration.values:
        errors["registration"] = "must be register_and_merge, register or merge"
    kind = values.get("entity_kind")
    if kind is not None and (not isinstance(kind, str) or not KIND_RE.match(kind)):
        errors["entity_kind"] = f"{kind!r} is not a valid kind"
    if registration == choices.Registration.MERGE and values.get("entity_type"):
        errors["entity_type"] = "The type is not configurable when the integration only merges"
    if "secondary_kinds" in values:
        kinds = values["secondary_kinds"]
        if not isinstance(kinds, list) or not set(kinds) <= set(choices.SecondaryKind.values):
            errors["secondary_kinds"] = "must be a list of pull_requests and/or commits"
        elif instance is not None and sorted(kinds) != sorted(instance.secondary_kinds):
            errors["secondary_kinds"] = "Secondary kinds are locked after creation"
    frequency = values.get("update_frequency")
    if frequency is not None:
        if isinstance(frequency, str):
            frequency = choices.UPDATE_FREQUENCIES.get(frequency, frequency)
        if frequency not in dict(choices.UPDATE_FREQUENCY_CHOICES):
            allowed = ", ".join(choices.UPDATE_FREQUENCIES)
            errors["update_frequency"] = f"must be one of {allowed}"
        values["update_frequency"] = frequency
    interval = values.get("full_sync_interval")
    if interval is not None and (not isinstance(interval, int) or not 60 <= interval <= 10080):
        errors["full_sync_interval"] = "must be a number of minutes from 60 to 10080 (a week)"
    if "writeback_mode" in values and values["writeback_mode"] not in choices.WritebackMode.values:
        errors["writeback_mode"] = "must be pull_request or commit"
    if "state" in values and values["state"] not in choices.IntegrationState.values:
        errors["state"] = "must be enabled or suspended"
    threshold = values.get("vanish_threshold")
    if threshold is not None and not (isinstance(threshold, int | float) and 0 < threshold <= 1):
        errors["vanish_threshold"] = "must be a number in (0, 1]"
    if "labels" in values and (
        not isinstance(values["labels"], list)
        or not all(isinstance(label, str) for label in values["labels"])
    ):
        errors["labels"] = "must be a list of strings"
    if errors:
        raise ValidationError(errors)


def _apply_rules(integration: Integration, rules: list[RuleInput]) -> None:
    integration.correlation_rules.all().delete()
    CorrelationRule.objects.bulk_create(
        CorrelationRule(
            integration=integration,
            ingested_path=rule.ingested,
            catalog_path=rule.catalog,
            operator=rule.operator,
            position=index,
        )
        for index, rule in enumerate(rules)
    )


# Settings a recommendation depends on: what is matched (rules, kind, scope), which name a
# Register would take (mappings), and which actions the integration allows.
RECOMMENDATION_SETTINGS = {"correlation", "field_mappings", "registration", "entity_kind", "scope"}


def integration_recommendations_refresh(
    *,
    integration: Integration,
    entity_ids: list[int] | None = None,
    deleted_refs: list[str] | None = None,
) -> int:
    """Recompute the recommendations and suggested matches of the integration's records not
    yet imported, through the correlation index (never records × entities): all of them
    (``entity_ids`` None: the rules or settings changed), or those the catalog entities
    ``entity_ids`` (created, changed, renamed or deleted; ``deleted_refs``: the ref keys of the
    deleted ones) can affect. Returns how many records' advice changed."""
    if entity_ids is None:
        changed = discovery.recommendations_refresh(integration=integration)
    else:
        changed = discovery.recommendations_entities_changed(
            integration=integration, entity_ids=entity_ids, deleted_refs=deleted_refs or ()
        )
    logger.info(
        "integrations.recommendations.refreshed",
        extra={
            "integration_id": integration.pk,
            "entities": None if entity_ids is None else len(entity_ids),
            "changed": changed,
        },
    )
    return changed


def _apply_mappings(integration: Integration, mappings: dict[str, str]) -> None:
    integration.field_mappings.all().delete()
    FieldMapping.objects.bulk_create(
        FieldMapping(integration=integration, catalog_path=path, expression=expr, position=i)
        for i, (path, expr) in enumerate(mappings.items())
    )


@transaction.atomic
def integration_create(*, connector: Connector, name: str, **values) -> Integration:
    """Create an integration; rules default to ``name → metadata.name`` and field mappings to
    the provider's defaults."""
    provider_class = provider_class_get(connector.provider, "connector")
    values = dict(values)
    _validate_settings(values, instance=None)
    target = values.pop("target", {}) or {}
    target_errors = provider_class.validate_target(target)
    if target_errors:
        raise ValidationError({f"target.{k}": v for k, v in target_errors.items()})
    rules = correlation_rules_validate(values.pop("correlation", DEFAULT_CORRELATION))
    mappings = values.pop("field_mappings", None)
    if mappings is None:
        mappings = dict(provider_class.default_field_mappings)
    mappings = field_mappings_validate(mappings)
    if Integration.objects.filter(name=name).exists():
        raise ValidationError({"name": f"An integration named {name!r} already exists"})
    if values.get("registration") == choices.Registration.MERGE:
        values["entity_type"] = ""
    values.setdefault("secondary_kinds", list(DEFAULT_SECONDARY_KINDS))
    integration = Integration(
        name=name, connector=connector, provider=connector.provider, target=target, **values
    )
    integration.webhook_secret = secrets_module.token_urlsafe(32)
    integration.next_sync_at = timezone.now()
    integration.full_clean(exclude=["connector", "scope"])
    integration.save()
    _apply_rules(integration, rules)
    _apply_mappings(integration, mappings)
    logger.info("integrations.integration.created", extra={"integration_id": integration.pk})
    if integration.is_enabled:
        _webhook_register_enqueue(integration)
    return integration


@transaction.atomic
def integration_update(*, integration: Integration, **values) -> Integration:
    """Change settings; secondary kinds are frozen, the connector's provider cannot change."""
    values = dict(values)
    _validate_settings(values, instance=integration)
    if "connector" in values and values["connector"].provider != integration.provider:
        raise ValidationError({"connector": "The connector must be of the same provider"})
    if "target" in values:
        target_errors = registry.get(integration.provider).validate_target(values["target"] or {})
        if target_errors:
            raise ValidationError({f"target.{k}": v for k, v in target_errors.items()})
    rules = values.pop("correlation", None)
    mappings = values.pop("field_mappings", None)
    if rules is not None:
        _apply_rules(integration, correlation_rules_validate(rules))
    if mappings is not None:
        _apply_mappings(integration, field_mappings_validate(mappings))
    if (
        "name" in values
        and Integration.objects.filter(name=values["name"]).exclude(pk=integration.pk).exists()
    ):
        raise ValidationError({"name": f"An integration named {values['name']!r} already exists"})
    if values.get("registration") == choices.Registration.MERGE:
        values["entity_type"] = ""
    for field, value in values.items():
        setattr(integration, field, value)
    integration.full_clean(exclude=["connector", "scope"])
    integration.save()
    if integration.is_enabled and ({"target", "connector"} & set(values)):
        _webhook_register_enqueue(integration)  # joins the new subjects' hooks, leaves the old
    if rules is not None or mappings is not None or "name" in values:
        linked = ImportedEntity.objects.filter(
            integration=integration, state=choices.LinkState.LINKED
        ).values_list("entity_id", flat=True)
        entities_ingested_rebuild(entity_ids=list(linked))
    written = set(values) | {
        key for key, value in (("correlation", rules), ("field_mappings", mappings)) if value
    }
    if written & RECOMMENDATION_SETTINGS:
        # At once, in the same transaction: the rules and the advice they give commit together.
        integration_recommendations_refresh(integration=integration)
    return integration


# The task functions are imported where they are enqueued: integrations.tasks imports this module.


def _webhook_register_enqueue(integration: Integration) -> None:
    """Register the integration's hooks (join its subscriptions) after commit, when automatic
    registration is on."""
    if not settings.LANTERN_WEBHOOKS_AUTO_REGISTER:
        return
    from integrations.tasks import webhook_register

    integration_id = integration.pk
    transaction.on_commit(lambda: webhook_register.delay(integration_id))


def _webhook_unregister_enqueue(integration: Integration) -> None:
    """The integration leaves its webhook subscriptions now (in this transaction); a
    subscription it was the last one on has its hook removed after commit. An integration
    registered before hooks were shared has its own hook removed (what that needs is read now:
    the integration may be deleted by then). Only with automatic registration on."""
    if not settings.LANTERN_WEBHOOKS_AUTO_REGISTER:
        return
    from integrations.tasks import webhook_subscription_release, webhook_unregister

    subscriptions = list(integration.webhook_subscriptions.all())
    if not subscriptions:
        if integration.webhook_registration:
            args = (integration.connector_id, integration.target, integration.webhook_url)
            transaction.on_commit(lambda: webhook_unregister.delay(*args))
        return
    connector_id = integration.connector_id
    for subscription in subscriptions:
        subscription.integrations.remove(integration)
        if not subscription.integrations.exists():
            subscription_id = subscription.pk
            transaction.on_commit(
                lambda pk=subscription_id: webhook_subscription_release.delay(pk, connector_id)
            )
    Integration.objects.filter(pk=integration.pk).update(
        webhook_registration="", webhook_registration_detail=""
    )


def integration_suspend(*, integration: Integration) -> Integration:
    integration.state = choices.IntegrationState.SUSPENDED
    integration.save(update_fields=["state", "updated_at"])
    _webhook_unregister_enqueue(integration)
    return integration


def integration_resume(*, integration: Integration) -> Integration:
    integration.state = choices.IntegrationState.ENABLED
    integration.next_sync_at = timezone.now()
    integration.save(update_fields=["state", "next_sync_at", "updated_at"])
    _webhook_register_enqueue(integration)
    return integration


class IntegrationSuspended(ValueError):
    """A suspended integration does not sync until it is resumed."""


@dataclass(frozen=True)
class SyncRequested:
    """What :func:`integration_sync_request` started, in words a person reads."""

    integration_id: int
    full: bool
    detail: str


def integration_sync_request(
    *, integration: Integration, full: bool = False, user=None
) -> SyncRequested:
    """Queue a manual sync, run once the current transaction commits.

    ``full`` lists every repository again now instead of only those changed since the last
    listing: the way to see deletions and apply rule changes before the next scheduled full
    listing (``full_sync_interval``). It costs every listing page plus the reads of each
    repository's pull requests, commits and catalog file that are due. Without it the engine
    decides (a full listing when one is due).
    """
    if not integration.is_enabled:
        raise IntegrationSuspended(f"Integration {integration.name} is suspended: resume it first")
    from integrations.tasks import sync_enqueue  # tasks imports this module

    sync_enqueue(
        integration_id=integration.pk,
        trigger=choices.SyncTrigger.MANUAL,
        full=True if full else None,
    )
    logger.info(
        "integrations.sync.requested",
        extra={
            "integration_id": integration.pk,
            "full": full,
            "user_id": getattr(user, "pk", None),
        },
    )
    if full:
        detail = (
            f"Full sync of {integration.name} queued: every repository is listed again and "
            "those no longer listed are marked gone."
        )
    else:
        detail = (
            f"Sync of {integration.name} queued: repositories changed since the last listing "
            "(every repository when a full listing is due)."
        )
    return SyncRequested(integration_id=integration.pk, full=full, detail=detail)


def integration_sync(
    *,
    integration_id: int,
    trigger: str,
    full: bool | None = None,
    on_progress: Callable[[SyncRun], None] | None = None,
) -> SyncRun:
    """Run a sync now, in this process (a worker's task, ``manage.py sync``): ``full`` None lets
    the engine choose (a full listing when one is due); ``on_progress`` sees the run as it
    goes."""
    return engine_sync.integration_sync(
        integration_id=integration_id, trigger=trigger, full=full, on_progress=on_progress
    )


def expired_claims_release() -> int:
    """Free the integrations whose run's claim expired (a dead worker's) and close those runs
    as abandoned; returns how many."""
    return claims.expired_claims_release()


def request_budgets_prune() -> int:
    """Forget the request counts of past hours (kept in the database when there is no Redis)."""
    return budget.past_windows_prune()


def webhook_delivery_process(*, delivery_id: int) -> str:
    """Refresh the repository a recorded delivery names, or leave it coalesced for the run that
    holds the integration (which refreshes it before it ends); returns the outcome."""
    return targeted.webhook_delivery_process(delivery_id=delivery_id)


def integration_changes_source(*, integration_id: int) -> str:
    """The ``catalog.services.entity_changes_source`` label of the integration's own catalog
    writes (its runs recompute their advice themselves)."""
    return discovery.entity_changes_source_of(integration_id)


@transaction.atomic
def integration_delete(*, integration: Integration) -> None:
    """Delete the integration and its discovered records; catalog entities stay, their
    ``metadata.integration`` item for it goes."""
    entity_ids = list(
        ImportedEntity.objects.filter(integration=integration).values_list("entity_id", flat=True)
    )
    integration_id = integration.pk
    _webhook_unregister_enqueue(integration)
    integration.delete()
    entities_ingested_rebuild(entity_ids=set(entity_ids))
    logger.info("integrations.integration.deleted", extra={"integration_id": integration_id})


# --- imports and links ----------------------------------------------------------------------


def discovered_import_many(
    *, integration: Integration, requests: list[ImportRequest], user=None
) -> list[tuple[ImportRequest, ImportedEntity | None, str]]:
    """Register or merge discovered records (each request succeeds or fails on its own):
    ``(request, imported entity or None, why not)`` per request, in order."""
    return engine_imports.discovered_import_many(
        integration=integration, requests=requests, user=user
    )


def imported_unlink(*, imported: ImportedEntity) -> ImportedEntity:
    """Stop syncing into the entity; the entity and everything on it stay."""
    return engine_imports.imported_unlink(imported=imported)


def connector_validate(
    *,
    provider: str,
    auth_kind: str,
    secrets: dict | None = None,
    base_url: str | None = None,
    config: dict | None = None,
    ca_pem: str | None = None,
    proxy_url: str | None = None,
    instance: Connector | None = None,
):
    """Everything checked before a connector is stored, in one place: the provider (registered,
    enabled), the auth kind (the provider's own), the secret names, what the auth kind
    requires (``instance``: the connector being updated, whose stored secrets and config count
    where the change gives none), the base URL (scheme, and a host that resolves only to public
    addresses unless allowlisted: resolved, never connected to) and the private CA. Raises one
    ``ValidationError`` naming each field and its reason; returns the provider class.

    ``base_url`` / ``ca_pem`` None: not being set (an update keeping them). The UI, the API,
    the admin and ``apply_config`` all reach this (through :func:`connector_create` /
    :func:`connector_update`, the admin form and the config reader too), so every path refuses
    the same things before anything is written.
    """
    provider_class = provider_class_get(provider)
    _auth_validate(provider_class, auth_kind, secrets)
    if secrets is None and instance is not None:
        secrets = instance.secrets
    if config is None and instance is not None:
        config = instance.config
    errors = provider_class.validate_connector(
        auth_kind=auth_kind,
        base_url=base_url,
        secrets=secrets or {},
        config=config or {},
        ca_pem=ca_pem,
    )
    errors.update(_network_errors(proxy_url=proxy_url or "", config=config or {}))
    if errors:
        logger.info(
            "integrations.connector.refused",
            extra={"provider": provider, "fields": sorted(errors)},
        )
        raise ValidationError(errors)
    return provider_class


def _network_errors(*, proxy_url: str, config: dict) -> dict[str, str]:
    """The connector's proxy URL and its ``connect_timeout`` / ``read_timeout`` (seconds, more
    than 0, at most 300) in ``config``; each refusal names its field."""
    errors = {}
    problem = proxy_url_validate(proxy_url)
    if problem:
        errors["proxy_url"] = f"The proxy URL {problem}"
    for key in NETWORK_CONFIG_KEYS:
        if key in config:
            problem = timeout_validate(config[key])
            if problem:
                errors[f"config.{key}"] = f"{key} {problem}"
    return errors


def connector_auth_kind_validate(*, provider: str, auth_kind: str) -> None:
    """Only that the auth kind is the provider's (a reader checking a file line by line)."""
    _auth_validate(provider_class_get(provider), auth_kind, None)


def _auth_validate(provider_class, auth_kind: str, secrets: dict | None) -> None:
    """The auth kind is one a registered provider declares, and this provider's (when it
    lists its own); the secrets are ones its spec stores."""
    try:
        spec = registry.auth_kind(auth_kind)
    except registry.UnknownAuthKind as exc:
        raise ValidationError({"auth_kind": str(exc)}) from None
    supported = provider_class.auth_kind_keys()
    if supported and auth_kind not in supported:
        allowed = ", ".join(supported)
        raise ValidationError(
            {"auth_kind": f"{provider_class.name} supports these auth kinds: {allowed}"}
        )
    if secrets:
        unknown = set(secrets) - set(spec.secret_fields)
        if unknown:
            raise ValidationError(
                {"secrets": f"unknown secrets for {auth_kind}: {', '.join(sorted(unknown))}"}
            )


@transaction.atomic
def connector_create(
    *,
    name: str,
    provider: str,
    auth_kind: str,
    secrets: dict | None = None,
    base_url: str = "",
    config: dict | None = None,
    ca_pem: str = "",
    proxy_url: str = "",
    scope=None,
) -> Connector:
    connector_validate(
        provider=provider,
        auth_kind=auth_kind,
        secrets=secrets or {},
        base_url=base_url,
        config=config or {},
        ca_pem=ca_pem,
        proxy_url=proxy_url,
    )
    if Connector.objects.filter(name=name).exists():
        raise ValidationError({"name": f"A connector named {name!r} already exists"})
    connector = Connector(
        name=name,
        provider=provider,
        auth_kind=auth_kind,
        base_url=base_url,
        config=config or {},
        ca_pem=ca_pem,
        scope=scope,
    )
    connector.secrets = secrets or {}
    connector.proxy_url = proxy_url
    connector.full_clean()
    connector.save()
    return connector


@transaction.atomic
def connector_update(*, connector: Connector, secrets: dict | None = None, **values) -> Connector:
    """Update a connector. ``secrets`` replaces the stored secrets only when given (write-only),
    as does ``proxy_url`` (``""`` removes the connector's own proxy).

    Checked as on create (:func:`connector_validate`), against the connector as it would be:
    the stored secrets count when none are given; a base URL or CA is checked when set."""
    allowed = {"name", "auth_kind", "base_url", "config", "ca_pem", "proxy_url", "scope"}
    unknown = set(values) - allowed
    if unknown:
        raise ValidationError({key: "unknown or read-only setting" for key in sorted(unknown)})
    auth_kind = values.get("auth_kind", connector.auth_kind)
    if auth_kind != connector.auth_kind and secrets is None:
        raise ValidationError(
            {"secrets": f"Changing the auth kind to {auth_kind} needs its secrets as well"}
        )
    connector_validate(
        provider=connector.provider,
        auth_kind=auth_kind,
        secrets=secrets,
        base_url=values["base_url"] if "base_url" in values else None,
        config=values.get("config"),
        ca_pem=values.get("ca_pem") or None,
        proxy_url=values.get("proxy_url") or None,
        instance=connector,
    )
    for field, value in values.items():
        setattr(connector, field, value)
    if secrets is not None:
        connector.secrets = secrets
    connector.full_clean()
    connector.save()
    return connector


def connector_tokens_store(*, connector: Connector, tokens: dict) -> None:
    """Renewed OAuth tokens a provider hands back, encrypted with the connector's other
    secrets (on the instance too, so the provider's next request uses them)."""
    connector.secrets = {**connector.secrets, **tokens}
    if connector.pk:
        Connector.objects.filter(pk=connector.pk).update(
            secrets_encrypted=connector.secrets_encrypted
        )


def connector_health_record(*, connector: Connector, ok: bool, message: str = "") -> None:
    """Record the last outcome of the connector's credential: up (with the time of this
    success) or down with what went wrong and how to fix it."""
    health.connector_health_record(connector=connector, ok=ok, message=message)


def connector_mark_down(*, connector: Connector, message: str) -> None:
    """The connector's credential stopped working (e.g. a refused token refresh)."""
    connector_health_record(connector=connector, ok=False, message=message)


# How long a started authorisation may take before its state is refused.
OAUTH_STATE_TTL_SECONDS = 600


@dataclass(frozen=True)
class OAuthStart:
    """A started browser authorisation: send the person to ``url``; keep ``pending`` (state,
    PKCE verifier, expiry) server-side, in their session, for :func:`connector_oauth_complete`."""

    url: str
    pending: dict


class OAuthFlowError(ValueError):
    """A browser authorisation that cannot start or finish; the message says what to do."""


def _browser_provider(connector: Connector):
    provider_class = provider_class_get(connector.provider, "connector")
    spec = next((s for s in provider_class.auth_kinds if s.key == connector.auth_kind), None)
    if spec is None or not spec.browser_authorization:
        raise OAuthFlowError(
            f"Connector {connector.name} authenticates with {connector.auth_kind}, which needs "
            "no browser authorisation: there is nothing to connect"
        )
    return provider_class


def connector_oauth_start(*, connector: Connector) -> OAuthStart:
    """Start the OAuth 2.0 authorization code flow (PKCE S256) of a connector whose auth kind
    needs a person's consent (Data Center's application link). The state is single use and
    expires after ``OAUTH_STATE_TTL_SECONDS``."""
    provider_class = _browser_provider(connector)
    if not (connector.config or {}).get("client_id"):
        raise OAuthFlowError(
            "The connector has no client id: copy it from the application link first"
        )
    state = secrets_module.token_urlsafe(24)
    verifier, challenge = pkce_pair()
    url = provider_class.oauth_authorize_url(connector, state=state, code_challenge=challenge)
    pending = {
        "state": state,
        "verifier": verifier,
        "expires_at": time.time() + OAUTH_STATE_TTL_SECONDS,
    }
    logger.info("integrations.connector.oauth_started", extra={"connector_id": connector.pk})
    return OAuthStart(url=url, pending=pending)


def connector_oauth_complete(
    *, connector: Connector, code: str, state: str, pending: dict | None
) -> None:
    """Finish a browser authorisation: the returned ``state`` must be the one ``pending`` holds
    (what :func:`connector_oauth_start` kept for this connector in this session, popped by the
    caller so it serves once) and not expired; then the code is exchanged with the PKCE
    verifier, the tokens are stored encrypted and the connector is marked up. A refused code
    (``invalid_grant``) raises the provider's ``ProviderAuthError``; the stored tokens and the
    health stay as they were (a replayed code says nothing of them)."""
    provider_class = _browser_provider(connector)
    expected = str((pending or {}).get("state", ""))
    if not expected or not state or not secrets_module.compare_digest(expected, state):
        raise OAuthFlowError(
            "This authorisation was not started from this browser session for this connector, "
            "or was already used: click Connect again"
        )
    if float(pending.get("expires_at", 0)) < time.time():
        raise OAuthFlowError("The authorisation took too long and expired: click Connect again")
    if not code:
        raise OAuthFlowError("Bitbucket sent no authorization code back: click Connect again")
    verifier = str(pending.get("verifier", ""))
    tokens = provider_class.oauth_complete(connector, code=code, verifier=verifier)
    connector_tokens_store(connector=connector, tokens=tokens)
    connector_health_record(connector=connector, ok=True)
    logger.info("integrations.connector.oauth_completed", extra={"connector_id": connector.pk})


class ConnectorInUse(ValueError):
    """A connector still used by integrations cannot be deleted."""


@transaction.atomic
def connector_delete(*, connector: Connector) -> None:
    used_by = list(
        Integration.objects.select_for_update()
        .filter(connector=connector)
        .values_list("name", flat=True)
    )
    if used_by:
        raise ConnectorInUse(
            f"Connector {connector.name} is used by {', '.join(sorted(used_by))}: delete those "
            "integrations or move them to another connector first"
        )
    connector.delete()


def connector_test(*, connector: Connector, target: dict | None = None) -> ProbeResult:
    """Probe a connector (for a target such as ``{"workspace": ...}``): credentials and
    reachability. A saved connector's health is recorded, unless the failure is the target's.
    Returns the provider's ProbeResult."""
    provider_class = provider_class_get(connector.provider, "connector")
    integration = Integration(connector=connector, provider=connector.provider)
    integration.target = target or {}
    try:
        provider = registry.build(provider_class, connector=connector, integration=integration)
        result = provider.probe()
    except ProviderError as exc:
        result = ProbeResult(False, exc.message, target_error=not health.connector_failed(exc))
    else:
        http = getattr(getattr(provider, "client", None), "http", None)
        if http is not None:
            result.details.setdefault("route", http.route)
    # A failure of the target (a wrong workspace or project) is the integration's: the result
    # says so, and the connector keeps its health.
    if connector.pk and not result.target_error:
        connector_health_record(connector=connector, ok=result.ok, message=result.message)
    logger.info(
        "integrations.connector.tested",
        extra={"connector_id": connector.pk, "ok": result.ok, "target": result.target_error},
    )
    return result


# --- webhook registration -------------------------------------------------------------------


def _subscription_host(connector: Connector) -> str:
    """The instance a hook lives on (see ``Provider.instance_key``)."""
    return registry.get(connector.provider).instance_key(connector)


def _registration_outcome(exc: Exception | None) -> tuple[str, str]:
    if exc is None:
        return choices.WebhookRegistration.REGISTERED, ""
    if isinstance(exc, NotImplementedError):
        return choices.WebhookRegistration.MANUAL, str(exc)
    if isinstance(exc, ProviderAuthError):
        return choices.WebhookRegistration.MANUAL, (
            f"{exc.message}. Add the webhook by hand, or give the credential the webhook scope."
        )
    return choices.WebhookRegistration.FAILED, getattr(exc, "message", str(exc))


def _subscription_ensure(provider, subscription: WebhookSubscription, events: list[str]) -> str:
    """Register (or update) the subscription's hook on the provider; stores and returns the
    outcome."""
    remote_id, error = "", None
    try:
        remote_id = provider.ensure_webhook(
            subscription.url, subscription.secret, events or None, scope=subscription.scope_key
        )
    except (NotImplementedError, ProviderError) as exc:
        error = exc
    outcome, detail = _registration_outcome(error)
    subscription.registration, subscription.registration_detail = outcome, detail[:2000]
    subscription.events = events
    if outcome == choices.WebhookRegistration.REGISTERED:
        subscription.remote_id = (remote_id or "")[:200]
        subscription.registered_at = timezone.now()
    subscription.save()
    logger.info(
        "integrations.webhook.subscription_registration",
        extra={"subscription_id": subscription.pk, "outcome": outcome},
    )
    return outcome


_OUTCOME_RANK = {
    choices.WebhookRegistration.FAILED: 0,
    choices.WebhookRegistration.MANUAL: 1,
    choices.WebhookRegistration.REGISTERED: 2,
}


def integration_webhook_register(*, integration: Integration) -> str:
    """Join the integration to the webhook subscription of each subject its target is on (a
    Cloud workspace, Data Center projects or repositories) and record the outcome:
    ``registered``; ``manual`` when the provider or the credential cannot (the webhooks page
    then shows the subscription's URL, secret and events to set up by hand); ``failed``.

    A subscription's hook is registered once, by the first integration that needs it, and
    brought up to date when its events change or an earlier attempt did not register it; the
    others only join it. Its row is locked meanwhile, so two integrations starting together
    never register two hooks. An integration registered before hooks were shared has its own
    hook (posting to :attr:`Integration.webhook_url`) removed once it has joined."""
    provider = registry.for_integration(integration)
    previously_own_hook = (
        integration.webhook_registration == choices.WebhookRegistration.REGISTERED
        and not integration.webhook_subscriptions.exists()
    )
    try:
        scopes = provider.webhook_scopes()
    except (NotImplementedError, ProviderError) as exc:
        outcome, detail = _registration_outcome(exc)
        return _integration_registration_store(integration, outcome, detail)
    host, events = _subscription_host(integration.connector), sorted(provider.webhook_events)
    outcomes: list[tuple[str, str]] = []
    for scope in scopes:
        with transaction.atomic():
            subscription, created = WebhookSubscription.objects.select_for_update().get_or_create(
                provider=integration.provider, host=host, scope_key=scope
            )
            if created or not subscription.secret:
                subscription.secret = secrets_module.token_urlsafe(32)
                subscription.save(update_fields=["secret_encrypted", "updated_at"])
            subscription.integrations.add(integration)
            due = (
                created
                or subscription.registration != choices.WebhookRegistration.REGISTERED
                or sorted(subscription.events or []) != sorted(events)
            )
            if due:
                _subscription_ensure(provider, subscription, events)
            outcomes.append((subscription.registration, subscription.registration_detail))
    _subscriptions_leave(integration, keep={(host, scope) for scope in scopes})
    outcome, detail = (
        min(outcomes, key=lambda item: _OUTCOME_RANK.get(item[0], 0))
        if outcomes
        else (
            choices.WebhookRegistration.MANUAL,
            "The integration's target names no subject a hook can be registered on",
        )
    )
    if previously_own_hook and outcome == choices.WebhookRegistration.REGISTERED:
        try:
            provider.remove_webhook(integration.webhook_url)
        except (NotImplementedError, ProviderError) as exc:
            logger.warning(
                "integrations.webhook.own_hook_removal_failed",
                extra={"integration_id": integration.pk, "error": str(exc)},
            )
    return _integration_registration_store(integration, outcome, detail)


def _integration_registration_store(integration: Integration, outcome: str, detail: str) -> str:
    Integration.objects.filter(pk=integration.pk).update(
        webhook_registration=outcome, webhook_registration_detail=detail[:2000]
    )
    logger.info(
        "integrations.webhook.registration",
        extra={"integration_id": integration.pk, "outcome": outcome},
    )
    return outcome


def _subscriptions_leave(integration: Integration, *, keep: set[tuple[str, str]]) -> None:
    """Leave the subscriptions the integration's target is no longer on (a changed target or
    connector); one left without integrations has its hook removed after commit."""
    from integrations.tasks import webhook_subscription_release

    for subscription in integration.webhook_subscriptions.all():
        if (subscription.host, subscription.scope_key) in keep:
            continue
        subscription.integrations.remove(integration)
        if not subscription.integrations.exists():
            args = (subscription.pk, integration.connector_id)
            transaction.on_commit(lambda args=args: webhook_subscription_release.delay(*args))


def integrations_covering(
    *, connector: Connector, target: dict, exclude_id: int | None = None
) -> list[Integration]:
    """The integrations already on the workspace (Cloud) or instance and projects (Data
    Center) a new target names — what the wizard warns about: one integration per workspace is
    the advice, and two that import one repository conflict. Data Center targets without
    projects cover every project, so they overlap any other on the instance."""
    host = _subscription_host(connector)
    found = []
    candidates = Integration.objects.filter(provider=connector.provider).select_related("connector")
    if exclude_id is not None:
        candidates = candidates.exclude(pk=exclude_id)
    for other in candidates:
        if _subscription_host(other.connector) != host:
            continue
        theirs = other.target or {}
        if "workspace" in target or "workspace" in theirs:
            if (theirs.get("workspace") or "").lower() != (target.get("workspace") or "").lower():
                continue
        mine = {key.upper() for key in target.get("projects") or []}
        their_projects = {key.upper() for key in theirs.get("projects") or []}
        if mine and their_projects and not mine & their_projects:
            continue
        found.append(other)
    return found


def integration_webhook_unregister(*, connector: Connector, target: dict, url: str) -> int:
    """Remove the hooks posting to ``url`` — an integration's own hook, from before hooks were
    shared — after suspend or delete; best effort."""
    shell = Integration(connector=connector, provider=connector.provider, target=target)
    provider_class = registry.get(connector.provider)
    provider = registry.build(provider_class, connector=connector, integration=shell)
    try:
        return provider.remove_webhook(url)
    except (NotImplementedError, ProviderError) as exc:
        logger.warning(
            "integrations.webhook.unregister_failed", extra={"url": url, "error": str(exc)}
        )
        return 0


def webhook_subscription_release(*, subscription_id: int, connector: Connector) -> int:
    """Remove a subscription's hook from the provider and forget it, when no integration uses
    it any more (one that joined since keeps it); best effort, returns the hooks removed."""
    with transaction.atomic():
        subscription = (
            WebhookSubscription.objects.select_for_update().filter(pk=subscription_id).first()
        )
        if subscription is None or subscription.integrations.exists():
            return 0
        removed = 0
        try:
            provider_class = registry.get(connector.provider)
            target = provider_class.webhook_scope_target(subscription.scope_key)
            shell = Integration(connector=connector, provider=connector.provider, target=target)
            provider = registry.build(provider_class, connector=connector, integration=shell)
            removed = provider.remove_webhook(subscription.url, scope=subscription.scope_key)
        except (NotImplementedError, ProviderError, ValueError) as exc:
            logger.warning(
                "integrations.webhook.release_failed",
                extra={"subscription_id": subscription.pk, "error": str(exc)},
            )
        subscription.delete()
    logger.info(
        "integrations.webhook.subscription_released",
        extra={"subscription_id": subscription_id, "removed": removed},
    )
    return removed


@transaction.atomic
def integration_webhook_secret_rotate(*, integration: Integration) -> Integration:
    """New secrets on the provider and in Lantern together: the integration's own (its
    per-integration endpoint, for a hook added by hand) and each of its subscriptions' — a
    shared hook is updated once, for every integration on it. A registered hook is updated
    first, so the provider never signs with a secret Lantern does not know."""
    integration.webhook_secret = secrets_module.token_urlsafe(32)
    integration.save(update_fields=["webhook_secret_encrypted", "updated_at"])
    subscriptions = list(integration.webhook_subscriptions.select_for_update())
    registered = [
        s for s in subscriptions if s.registration == choices.WebhookRegistration.REGISTERED
    ]
    provider = registry.for_integration(integration) if registered else None
    for subscription in subscriptions:
        subscription.secret = secrets_module.token_urlsafe(32)
        if subscription not in registered:
            subscription.save(update_fields=["secret_encrypted", "updated_at"])
            continue
        try:
            provider.ensure_webhook(
                subscription.url,
                subscription.secret,
                subscription.events or None,
                scope=subscription.scope_key,
            )
        except (NotImplementedError, ProviderError) as exc:
            raise ValidationError(
                {"webhook": f"The provider refused the new secret ({exc}); nothing changed"}
            ) from exc
        subscription.save(update_fields=["secret_encrypted", "updated_at"])
    return integration


# --- write-back of catalog-info.yaml ---------------------------------------------------------

WRITE_BACK_PERMISSION = "integrations.write_back"
# How long a connector's write access, once probed, is believed (pages do not probe each time).
WRITEBACK_ACCESS_SECONDS = 300
WritebackPreview = engine_writeback.WritebackPreview


def _writeback_access_key(integration: Integration) -> str:
    connector = integration.connector
    stamp = connector.updated_at.timestamp() if connector.updated_at else 0
    return f"integrations.writeback.access.{integration.pk}.{connector.pk}.{stamp}"


def writeback_access(*, integration: Integration, refresh: bool = False) -> tuple[bool, str]:
    """Whether the integration's connector may write back, and otherwise what is missing (the
    scope or permission named): probed through the provider, then remembered for a few minutes
    per integration (and forgotten when the connector changes). ``refresh`` probes again."""
    key = _writeback_access_key(integration)
    if not refresh:
        known = cache.get(key)
        if known is not None:
            return tuple(known)
    try:
        answer = registry.for_integration(integration).write_access()
    except ProviderError as exc:
        answer = (False, f"Write access could not be checked: {exc.message}")
    ok, detail = bool(answer[0]), str(answer[1] or "")
    cache.set(key, (ok, detail), WRITEBACK_ACCESS_SECONDS)
    logger.info(
        "integrations.writeback.access_checked",
        extra={"integration_id": integration.pk, "ok": ok},
    )
    return ok, detail


class _Operator:
    """Whoever runs ``manage.py write_back``: a person with the server's shell holds every
    permission, and is recorded as nobody in particular (``requested_by`` null)."""

    pk = None
    is_authenticated = True

    def has_perm(self, permission: str) -> bool:
        return True


OPERATOR = _Operator()


def _writeback_permission_refusal(user) -> str:
    if user is None or not user.has_perm(WRITE_BACK_PERMISSION):
        return (
            f"You lack the permission {WRITE_BACK_PERMISSION} (Can write catalog-info.yaml "
            "back to repositories): ask an administrator for it"
        )
    return ""


def _discovered_of(integration: Integration, discovered_ids: Any) -> list[DiscoveredEntity]:
    """The integration's records of ``discovered_ids`` in the order given, or a ValidationError
    on ``discovered_ids`` naming what is wrong (not a list of ids, unknown ids)."""
    if (
        not isinstance(discovered_ids, list | tuple)
        or not discovered_ids
        or not all(isinstance(i, int) and not isinstance(i, bool) for i in discovered_ids)
    ):
        raise ValidationError({"discovered_ids": "must be a non-empty list of discovered ids"})
    ids = list(dict.fromkeys(discovered_ids))
    found = DiscoveredEntity.objects.filter(integration=integration, pk__in=ids).in_bulk()
    unknown = [str(i) for i in ids if i not in found]
    if unknown:
        raise ValidationError(
            {
                "discovered_ids": f"Not discovered by integration {integration.name}: "
                + ", ".join(unknown)
            }
        )
    return [found[i] for i in ids]


def writeback_preview(
    *, integration: Integration, discovered_ids: list[int], user
) -> list[WritebackPreview]:
    """What writing back each repository would change: the current file (read through the
    provider) against Lantern's rendering, and whether the write may go ahead or why not (not
    imported, the permission missing, the connector's write scope missing). Writes nothing."""
    discovered = _discovered_of(integration, discovered_ids)
    refusal = _writeback_permission_refusal(user)
    if not refusal:
        ok, detail = writeback_access(integration=integration)
        refusal = "" if ok else detail
    entities = engine_writeback.linked_entities([d.pk for d in discovered])
    provider = registry.for_integration(integration)
    return [
        engine_writeback.writeback_preview_build(
            provider=provider, discovered=d, entity=entities.get(d.pk), refusal=refusal
        )
        for d in discovered
    ]


def writeback_mode_validate(*, integration: Integration, mode: str | None) -> str:
    """The mode a request writes with (None: the integration's), or a ValidationError on
    ``mode``: a direct commit only where an admin picked it for the integration."""
    if mode is None or mode == "":
        return integration.writeback_mode
    if mode not in choices.WritebackMode.values:
        raise ValidationError({"mode": "must be pull_request or commit"})
    if mode == choices.WritebackMode.COMMIT and (
        integration.writeback_mode != choices.WritebackMode.COMMIT
    ):
        raise ValidationError(
            {
                "mode": f"Integration {integration.name} writes back through pull requests: "
                "direct commits need its write-back mode (writeback_mode) set to commit by "
                "an administrator"
            }
        )
    return mode


@transaction.atomic
def writeback_request(
    *,
    integration: Integration,
    discovered_ids: list[int],
    mode: str | None,
    user,
    expected: dict[int, str | None] | None = None,
    reviewers: list[str] | None = None,
    enqueue: bool = True,
) -> WriteBackBatch:
    """Queue the write-back of each repository: a batch and one pending record per repository,
    run by a task once this transaction commits. ``expected`` (discovered id → the blob id a
    preview showed, None for no file) makes the write refuse a file changed since that
    preview; ``reviewers`` (provider account ids) are asked to review the pull requests;
    ``enqueue`` False leaves the running to the caller (:func:`writeback_run`).
    Refused as a whole (PermissionDenied, or a ValidationError naming the field) when
    the user lacks the permission, an id is unknown or not imported, the mode is not allowed or
    the connector may not write."""
    refusal = _writeback_permission_refusal(user)
    if refusal:
        raise PermissionDenied(refusal)
    discovered = _discovered_of(integration, discovered_ids)
    mode = writeback_mode_validate(integration=integration, mode=mode)
    entities = engine_writeback.linked_entities([d.pk for d in discovered])
    missing = [d.name for d in discovered if d.pk not in entities]
    if missing:
        raise ValidationError(
            {"discovered_ids": "Not imported (no catalog entity to write): " + ", ".join(missing)}
        )
    if expected is not None and not isinstance(expected, dict):
        raise ValidationError({"expected": "must map discovered ids to blob ids (or null)"})
    reviewers = list(reviewers or [])
    if reviewers and mode != choices.WritebackMode.PULL_REQUEST:
        raise ValidationError({"reviewers": "Reviewers are for pull requests, not direct commits"})
    if len(reviewers) > 20 or not all(
        isinstance(r, str) and r.strip() and len(r) <= 200 for r in reviewers
    ):
        raise ValidationError({"reviewers": "At most 20 account ids, each a non-empty string"})
    ok, detail = writeback_access(integration=integration)
    if not ok:
        raise ValidationError({"connector": detail})
    now = timezone.now()
    batch = WriteBackBatch.objects.create(
        integration=integration,
        requested_by=user if getattr(user, "pk", None) else None,
        requested_at=now,
        mode=mode,
        total=len(discovered),
        reviewers=[r.strip() for r in reviewers],
    )
    WriteBack.objects.bulk_create(
        WriteBack(
            integration=integration,
            discovered=record,
            entity=entities[record.pk],
            batch=batch,
            requested_by=batch.requested_by,
            requested_at=now,
            mode=mode,
            branch=(
                engine_writeback.writeback_branch(entities[record.pk].name)
                if mode == choices.WritebackMode.PULL_REQUEST
                else ""
            ),
            **_expected_fields(expected, record.pk),
        )
        for record in discovered
    )
    if enqueue:  # the command line runs the batch itself, in the foreground
        from integrations.tasks import writeback_enqueue  # tasks imports this module

        writeback_enqueue(batch_id=batch.pk)
    logger.info(
        "integrations.writeback.requested",
        extra={
            "integration_id": integration.pk,
            "batch_id": batch.pk,
            "mode": mode,
            "repositories": len(discovered),
            "user_id": getattr(user, "pk", None),
        },
    )
    return batch


def _expected_fields(expected: dict | None, discovered_id: int) -> dict:
    if not expected:
        return {}
    for key in (discovered_id, str(discovered_id)):
        if key in expected:
            value = expected[key]
            if value is None:
                return {"expected_absent": True}
            if not isinstance(value, str) or len(value) != 40:
                raise ValidationError({"expected": f"{discovered_id}: not a git blob id"})
            return {"expected_blob": value}
    return {}


def writeback_run(*, batch_id: int) -> WriteBackBatch:
    """Run a batch now, in this process (the task's body): each pending repository in order,
    its outcome recorded; finished ones are skipped, so a re-run is harmless."""
    return engine_writeback.writeback_batch_run(batch_id=batch_id)
