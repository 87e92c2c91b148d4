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
"""

import hashlib
import hmac
import inspect
import logging

from django.db import IntegrityError, transaction
from django.db.models import F
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from integrations.choices import IntegrationState, WebhookOutcome
from integrations.models import Integration, WebhookDelivery
from integrations.providers import registry
from integrations.providers.base import WebhookEvent, WebhookPayloadError
from integrations.tasks import webhook_delivery_enqueue
from portal.api import error_body

logger = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024
SIGNATURE_HEADER = "X-Hub-Signature"


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


def _record(integration: Integration, **fields) -> WebhookDelivery | None:
    """The new delivery row, or ``None`` when this delivery id is already recorded (checked by
    the unique constraint, so two concurrent redeliveries cannot both get through)."""
    try:
        with transaction.atomic():
            return WebhookDelivery.objects.create(integration=integration, **fields)
    except IntegrityError:
        return None


def _parse(integration: Integration, headers, body: bytes) -> WebhookEvent:
    """Parsing needs no credentials: a provider whose ``parse_webhook`` is a static or class
    method is asked directly; otherwise through an instance (which builds its HTTP client)."""
    provider_class = registry.get(integration.provider)
    declared = inspect.getattr_static(provider_class, "parse_webhook", None)
    if isinstance(declared, staticmethod | classmethod):
        return provider_class.parse_webhook(headers, body)
    return registry.for_integration(integration).parse_webhook(headers, body)


@csrf_exempt
@require_POST
def webhook_receive(request: HttpRequest, integration_id: int, provider: str):
    try:  # parsing needs no connector: it is loaded only if a provider must be built
        integration = Integration.objects.get(pk=integration_id, provider=provider)
    except Integration.DoesNotExist:
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
                delivery_id=delivery_id[:200],
                event=request.headers.get("X-Event-Key", "")[:100],
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
    # Recorded in a transaction of its own; the processing is enqueued once it commits.
    delivery = _record(
        integration,
        delivery_id=event.delivery_id[:200],
        event=event.event[:100],
        repository_external_id=(event.repository_external_id or "")[:200],
        repository_name=(event.repository_name or "")[:255],
        outcome=outcome,
        detail=detail,
    )
    if delivery is not None and outcome == WebhookOutcome.QUEUED:
        webhook_delivery_enqueue(delivery_id=delivery.pk)
    log_extra.update(event=event.event, delivery=event.delivery_id)
    if delivery is None:
        logger.info("integrations.webhook.duplicate", extra=log_extra)
        return JsonResponse({"outcome": "duplicate", "delivery_id": event.delivery_id})
    logger.info(f"integrations.webhook.{outcome}", extra={**log_extra, "detail": detail})
    return JsonResponse(
        {"outcome": outcome, "delivery_id": event.delivery_id, "id": delivery.pk}, status=202
    )
