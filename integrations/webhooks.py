"""Webhook endpoints: verify, record, enqueue — nothing else.

``POST /webhooks/bitbucket-cloud/<integration id>`` and ``/webhooks/bitbucket-dc/<id>`` (ids,
not names, so a rename never breaks a URL). Every request is checked, in this order:

1. the integration exists and is of the URL's provider, else 404;
2. the body is at most :data:`MAX_BODY` bytes (declared and actually read), else 413;
3. ``X-Hub-Signature: sha256=<hex HMAC-SHA256 of the raw body>`` with the integration's own
   secret, compared in constant time, before anything is parsed — else 401;

a refused request stores nothing but the integration's rejected-delivery counter. Then the
provider parses the delivery (a body that is not JSON: 400, recorded), a suspended integration
or an event Lantern does not act on is recorded as ignored (202), a redelivery of a recorded
delivery id is acknowledged (200) without being processed again, and anything else is recorded
and handed to the ``webhook_delivery_process`` task once the transaction commits (202).

The accepting path is the hottest in Lantern (bursts of deliveries into one process), so it
runs two short prepared SQL statements (``portal.bulk``) and no ORM query compilation: the
integration's id, state and secret in one ``SELECT``, and the delivery in one autocommitted
``INSERT ... ON CONFLICT DO NOTHING`` whose missing ``RETURNING`` row means a redelivery.

**Shared hooks.** Integrations whose targets are on one subject (a Cloud workspace, a Data
Center project or repository) share one Bitbucket hook, a ``WebhookSubscription``, posting to
``/webhooks/<provider>/subscriptions/<id>``. A delivery there is checked the same way against
the subscription's secret, parsed once, and recorded once for each enabled integration on the
subscription whose target selects its repository (the provider's ``webhook_concerns``, the
``in_target`` filters read from the payload) — one ``SELECT`` of the subscription with its
integrations, one multi-row ``INSERT ... ON CONFLICT DO NOTHING`` — then each new row is handed
to the task. Redelivery is idempotent per integration. The per-integration endpoint stays for
hooks people added by hand.
"""

import hashlib
import hmac
import inspect
import json
import logging
from functools import cache

from django.db import IntegrityError, connection
from django.db.models import F
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from integrations.choices import IntegrationState, WebhookOutcome
from integrations.models import Integration, WebhookDelivery, WebhookSubscription
from integrations.providers import registry
from integrations.providers.base import WebhookEvent, WebhookPayloadError
from integrations.tasks import webhook_delivery_enqueue
from portal.api import error_body
from portal.bulk import instance_get, instance_insert_new, instances_insert_new

logger = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024
SIGNATURE_HEADER = "X-Hub-Signature"
_BIGINT_MAX = 2**63 - 1  # ids beyond it cannot exist (and PostgreSQL would refuse to compare)


# What the endpoint needs of an integration (no connector).
_FIND_FIELDS = ("id", "provider", "state", "webhook_secret_encrypted")


def _integration_find(integration_id: int, provider: str) -> Integration | None:
    """The integration with only :data:`_FIND_FIELDS` loaded (as ``only()`` would load it)."""
    if not 0 < integration_id <= _BIGINT_MAX:
        return None
    return instance_get(Integration, _FIND_FIELDS, id=integration_id, provider=provider)


def signature_valid(secret: str, body: bytes, given: str) -> bool:
    """``given`` is ``sha256=`` and the hex HMAC-SHA256 of ``body`` under ``secret``; always
    one constant-time comparison, whatever was sent (an empty secret verifies nothing)."""
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    matches = hmac.compare_digest(expected.encode(), given.strip().lower().encode("utf-8"))
    return matches and bool(secret)


def _error(request: HttpRequest, status: int, message: str) -> JsonResponse:
    return JsonResponse(error_body(request, status, message), status=status)


def _reject(request: HttpRequest, integration: Integration, status: int, message: str):
    Integration.objects.filter(pk=integration.pk).update(
        webhook_rejected_count=F("webhook_rejected_count") + 1
    )
    logger.warning(
        "integrations.webhook.rejected",
        extra={"integration_id": integration.pk, "status": status, "reason": message},
    )
    return _error(request, status, message)


def _read_body(request: HttpRequest) -> bytes | None:
    """The raw body, or ``None`` when it is larger than :data:`MAX_BODY` (declared or read)."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > MAX_BODY:
        return None
    body = request.read(MAX_BODY + 1)
    return None if len(body) > MAX_BODY else body


_DELIVERY_UNIQUE = ("integration", "delivery_id")  # the webhook_delivery_unique constraint


def _delivery(
    integration_id: int,
    *,
    delivery_id: str,
    event: str,
    outcome: str,
    detail: str = "",
    repository_external_id: str = "",
    repository_name: str = "",
) -> WebhookDelivery:
    """A delivery row as both endpoints record it (values cut to their columns)."""
    return WebhookDelivery(
        integration_id=integration_id,
        delivery_id=delivery_id[:200],
        event=event[:100],
        repository_external_id=repository_external_id[:200],
        repository_name=repository_name[:255],
        outcome=outcome,
        detail=detail,
    )


def _record(
    integration: Integration,
    *,
    delivery_id: str,
    event: str,
    outcome: str,
    detail: str = "",
    repository_external_id: str = "",
    repository_name: str = "",
) -> int | None:
    """The new delivery row's id, or ``None`` when this delivery id is already recorded (checked
    by the unique constraint, so two concurrent redeliveries cannot both get through). Outside a
    transaction the statement commits by itself; a conflict is no error, so an enclosing
    transaction is never broken by a redelivery either."""
    delivery = _delivery(
        integration.pk,
        delivery_id=delivery_id,
        event=event,
        outcome=outcome,
        detail=detail,
        repository_external_id=repository_external_id,
        repository_name=repository_name,
    )
    try:
        inserted = instance_insert_new(delivery, unique=_DELIVERY_UNIQUE)
    except IntegrityError:
        # The integration was deleted since it was read: there is nothing left to deliver to.
        return None
    return delivery.pk if inserted else None


def _parse(integration: Integration, headers, body: bytes) -> WebhookEvent:
    """Parsing needs no credentials: a provider whose ``parse_webhook`` is a static or class
    method is asked directly; otherwise through an instance (which builds its HTTP client)."""
    provider_class = registry.get(integration.provider)
    declared = inspect.getattr_static(provider_class, "parse_webhook", None)
    if isinstance(declared, staticmethod | classmethod):
        return provider_class.parse_webhook(headers, body)
    instance = Integration.objects.select_related("connector").get(pk=integration.pk)
    return registry.for_integration(instance).parse_webhook(headers, body)


@csrf_exempt
@require_POST
def webhook_receive(request: HttpRequest, integration_id: int, provider: str):
    integration = _integration_find(integration_id, provider)
    if integration is None:
        return _error(request, 404, f"No {provider} integration {integration_id}")
    log_extra = {"integration_id": integration.pk}
    body = _read_body(request)
    if body is None:
        return _reject(request, integration, 413, f"The body is larger than {MAX_BODY} bytes")
    given = request.headers.get(SIGNATURE_HEADER, "")
    if not signature_valid(integration.webhook_secret, body, given):
        reason = "missing" if not given else "does not match"
        return _reject(request, integration, 401, f"The {SIGNATURE_HEADER} signature {reason}")

    try:
        event = _parse(integration, request.headers, body)
    except registry.UnknownProvider:
        return _error(request, 404, f"The {provider} provider is not available here")
    except WebhookPayloadError as exc:
        delivery_id = request.headers.get("X-Request-UUID") or request.headers.get("X-Request-Id")
        if delivery_id:
            _record(
                integration,
                delivery_id=delivery_id,
                event=request.headers.get("X-Event-Key", ""),
                outcome=WebhookOutcome.REJECTED,
                detail=str(exc),
            )
        logger.warning("integrations.webhook.malformed", extra={**log_extra, "error": str(exc)})
        return _error(request, 400, str(exc))

    outcome, detail = WebhookOutcome.QUEUED, ""
    if integration.state != IntegrationState.ENABLED:
        outcome, detail = WebhookOutcome.IGNORED, "Integration is suspended"
    elif event.ignored:
        outcome, detail = WebhookOutcome.IGNORED, f"Lantern does not act on {event.event!r}"
    # Recorded by a statement of its own; the processing is enqueued once it commits.
    recorded = _record(
        integration,
        delivery_id=event.delivery_id,
        event=event.event,
        repository_external_id=event.repository_external_id or "",
        repository_name=event.repository_name or "",
        outcome=outcome,
        detail=detail,
    )
    if recorded is not None and outcome == WebhookOutcome.QUEUED:
        webhook_delivery_enqueue(delivery_id=recorded)
    log_extra.update(event=event.event, delivery=event.delivery_id)
    if recorded is None:
        logger.info("integrations.webhook.duplicate", extra=log_extra)
        return JsonResponse({"outcome": "duplicate", "delivery_id": event.delivery_id})
    logger.info(f"integrations.webhook.{outcome}", extra={**log_extra, "detail": detail})
    return JsonResponse(
        {"outcome": outcome, "delivery_id": event.delivery_id, "id": recorded}, status=202
    )


# -- shared hooks ------------------------------------------------------------------------------


@cache
def _subscription_statement() -> str:
    """The subscription's secret with its integrations' id, state and target, one row per
    integration (one with nulls when it has none); built once from the models."""
    quote = connection.ops.quote_name
    subscriptions, integrations = WebhookSubscription._meta, Integration._meta
    through = WebhookSubscription.integrations.through._meta
    own = quote(through.get_field("webhooksubscription").column)
    member = quote(through.get_field("integration").column)
    return (
        f"SELECT s.{quote('secret_encrypted')}, i.{quote('id')}, i.{quote('state')}, "  # noqa: S608
        f"i.{quote('target')} FROM {quote(subscriptions.db_table)} s "
        f"LEFT JOIN {quote(through.db_table)} t ON t.{own} = s.{quote('id')} "
        f"LEFT JOIN {quote(integrations.db_table)} i ON i.{quote('id')} = t.{member} "
        f"WHERE s.{quote('id')} = %s AND s.{quote('provider')} = %s"
    )


def _subscription_find(subscription_id: int, provider: str):
    """``(subscription with its secret, [(integration id, state, target)])`` or ``None``."""
    if not 0 < subscription_id <= _BIGINT_MAX:
        return None
    with connection.cursor() as cursor:
        cursor.execute(_subscription_statement(), [subscription_id, provider])
        rows = cursor.fetchall()
    if not rows:
        return None
    subscription = WebhookSubscription(
        pk=subscription_id, provider=provider, secret_encrypted=rows[0][0]
    )
    members = []
    for _, integration_id, state, target in rows:
        if integration_id is None:
            continue
        if isinstance(target, str | bytes):
            target = json.loads(target)
        members.append((integration_id, state, target or {}))
    return subscription, members


def _subscription_reject(request: HttpRequest, subscription_id: int, status: int, message: str):
    WebhookSubscription.objects.filter(pk=subscription_id).update(
        rejected_count=F("rejected_count") + 1
    )
    logger.warning(
        "integrations.webhook.rejected",
        extra={"subscription_id": subscription_id, "status": status, "reason": message},
    )
    return _error(request, status, message)


def _record_many(integration_ids: list[int], **values) -> list[WebhookDelivery]:
    """The delivery recorded once per integration, in one statement; only the new rows are
    returned (an integration that has this delivery id already is a redelivery)."""
    deliveries = [_delivery(integration_id, **values) for integration_id in integration_ids]
    try:
        inserted = instances_insert_new(deliveries, unique=_DELIVERY_UNIQUE)
    except IntegrityError:
        # An integration was deleted since it was read: record for the others one by one.
        inserted = [
            _record(Integration(pk=d.integration_id), **values) is not None for d in deliveries
        ]
    return [d for d, new in zip(deliveries, inserted, strict=True) if new]


@csrf_exempt
@require_POST
def subscription_webhook_receive(request: HttpRequest, subscription_id: int, provider: str):
    found = _subscription_find(subscription_id, provider)
    if found is None:
        return _error(request, 404, f"No {provider} webhook subscription {subscription_id}")
    subscription, members = found
    body = _read_body(request)
    if body is None:
        return _subscription_reject(
            request, subscription_id, 413, f"The body is larger than {MAX_BODY} bytes"
        )
    given = request.headers.get(SIGNATURE_HEADER, "")
    if not signature_valid(subscription.secret, body, given):
        reason = "missing" if not given else "does not match"
        return _subscription_reject(
            request, subscription_id, 401, f"The {SIGNATURE_HEADER} signature {reason}"
        )
    log_extra = {"subscription_id": subscription_id}
    enabled = [(pk, target) for pk, state, target in members if state == IntegrationState.ENABLED]
    try:
        provider_class = registry.get(provider)
        event = provider_class.parse_webhook(request.headers, body)
    except registry.UnknownProvider:
        return _error(request, 404, f"The {provider} provider is not available here")
    except WebhookPayloadError as exc:
        delivery_id = request.headers.get("X-Request-UUID") or request.headers.get("X-Request-Id")
        if delivery_id and enabled:
            _record_many(
                [pk for pk, _ in enabled],
                delivery_id=delivery_id,
                event=request.headers.get("X-Event-Key", ""),
                outcome=WebhookOutcome.REJECTED,
                detail=str(exc),
            )
        logger.warning("integrations.webhook.malformed", extra={**log_extra, "error": str(exc)})
        return _error(request, 400, str(exc))

    log_extra.update(event=event.event, delivery=event.delivery_id)
    if event.ignored:
        concerned = [pk for pk, _ in enabled]
        outcome, detail = WebhookOutcome.IGNORED, f"Lantern does not act on {event.event!r}"
    else:
        concerned = [pk for pk, target in enabled if provider_class.webhook_concerns(target, event)]
        outcome, detail = WebhookOutcome.QUEUED, ""
    if not concerned:
        logger.info("integrations.webhook.unconcerned", extra=log_extra)
        return JsonResponse(
            {
                "outcome": WebhookOutcome.IGNORED,
                "delivery_id": event.delivery_id,
                "detail": "No enabled integration on this subscription selects the repository",
                "integrations": [],
            },
            status=202,
        )
    recorded = _record_many(
        concerned,
        delivery_id=event.delivery_id,
        event=event.event,
        repository_external_id=event.repository_external_id or "",
        repository_name=event.repository_name or "",
        outcome=outcome,
        detail=detail,
    )
    if outcome == WebhookOutcome.QUEUED:
        for delivery in recorded:
            webhook_delivery_enqueue(delivery_id=delivery.pk)
    if not recorded:
        logger.info("integrations.webhook.duplicate", extra=log_extra)
        return JsonResponse({"outcome": "duplicate", "delivery_id": event.delivery_id})
    logger.info(
        f"integrations.webhook.{outcome}",
        extra={**log_extra, "integrations": [d.integration_id for d in recorded]},
    )
    return JsonResponse(
        {
            "outcome": outcome,
            "delivery_id": event.delivery_id,
            "integrations": [d.integration_id for d in recorded],
            "ids": [d.pk for d in recorded],
        },
        status=202,
    )
