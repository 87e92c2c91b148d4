"""A connector's health: whether it last worked, wherever it was used (a probe, a sync, a token
refresh).

Up when its credential was last accepted; down when the connector itself failed: the credential
was refused (a 401, a refused token refresh, a missing scope), or its instance could not be
reached or trusted (TLS). A wrong workspace, project or repository is the integration's error
and leaves the connector as it was, and so does a spent request budget.
"""

import logging

from django.utils import timezone

from integrations.choices import Health
from integrations.models import Connector
from integrations.providers.base import ProviderError, ProviderNotFound

logger = logging.getLogger(__name__)

LAST_ERROR_LIMIT = 2000
# How stale ``last_checked_at`` may get before the same outcome is written again.
RECHECK_WRITE_SECONDS = 60


def connector_failed(exc: ProviderError) -> bool:
    """Whether a run's failure is the connector's, not its target's nor the budget's."""
    return not (isinstance(exc, ProviderNotFound) or exc.run_scoped)


def connector_health_record(*, connector: Connector, ok: bool, message: str = "") -> None:
    """Record an outcome on the connector (as loaded; it is updated too): ``ok`` sets up and the
    last success, otherwise down with ``message``, the reason and its fix, as the connector and
    integration pages show it. The same outcome again within ``RECHECK_WRITE_SECONDS`` writes
    nothing, so back-to-back runs add no query for it."""
    now = timezone.now()
    if ok:
        values = {"health": Health.UP, "last_error": "", "last_success_at": now}
    else:
        values = {"health": Health.DOWN, "last_error": message[:LAST_ERROR_LIMIT]}
    checked = connector.last_checked_at
    if (
        connector.health == values["health"]
        and connector.last_error == values["last_error"]
        and checked is not None
        and (now - checked).total_seconds() < RECHECK_WRITE_SECONDS
    ):
        return
    values["last_checked_at"] = now
    Connector.objects.filter(pk=connector.pk).update(**values)
    for field, value in values.items():
        setattr(connector, field, value)
    if not ok:
        logger.warning(
            "integrations.connector.down", extra={"connector_id": connector.pk, "error": message}
        )
