"""The sync claim: one run per integration at a time, across every worker.

A claim is a conditional UPDATE on the integration (who holds it, until when). A run renews it
as it goes (:func:`heartbeat`); a worker that dies stops renewing it, so the integration is free
again a TTL after its last sign of life, and the run is closed as abandoned.
"""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from integrations.choices import SyncState
from integrations.models import Integration, SyncRun

logger = logging.getLogger(__name__)

LOCK_TTL = timedelta(minutes=10)


class SyncAborted(Exception):
    """Raised inside a run to stop it (used by tests to inject crashes)."""


class ClaimLost(SyncAborted):
    """The run's claim expired and another run took the integration over: stop writing."""


def lock_ttl() -> timedelta:
    """How long a claim lasts without a heartbeat (``LANTERN_SYNC_LOCK_TTL`` seconds, default
    ten minutes). A run renews it on every page; a worker that dies stops renewing it, so the
    integration is free again this long after its last sign of life."""
    seconds = getattr(settings, "LANTERN_SYNC_LOCK_TTL", None)
    return LOCK_TTL if seconds is None else timedelta(seconds=seconds)


def integration_claim(*, integration_id: int, run: SyncRun) -> bool:
    """Take the integration for this run, unless another live run holds it.

    A claim that expired belongs to a run whose worker died (killed, out of memory, the host
    lost): it is taken over, and that run is closed as abandoned so nobody waits for it.
    """
    now = timezone.now()
    with transaction.atomic():
        previous = (
            Integration.objects.select_for_update()
            .filter(pk=integration_id)
            .values_list("locked_by_run", "locked_until")
            .first()
        )
        claimed = (
            Integration.objects.filter(pk=integration_id)
            .filter(Q(locked_by_run__isnull=True) | Q(locked_until__lt=now))
            .update(locked_by_run=run.pk, locked_until=now + lock_ttl())
        )
    if not claimed:
        return False
    run.heartbeat_at = now
    SyncRun.objects.filter(pk=run.pk).update(heartbeat_at=now)
    if previous and previous[0] is not None and previous[0] != run.pk:
        _abandon(previous[0], expired_at=previous[1], now=now, by=f"Run {run.pk} took over.")
    return True


def _abandon(run_id: int, *, expired_at: datetime | None, now: datetime, by: str) -> None:
    """Close a run whose worker stopped without finishing it (only if it is still running)."""
    last = SyncRun.objects.filter(pk=run_id).values_list("heartbeat_at", "started_at").first()
    if last is None:
        return
    seen = last[0] or last[1]
    error = (
        f"Abandoned: the worker running this sync stopped without finishing it (last heartbeat "
        f"{seen:%Y-%m-%d %H:%M:%S} UTC; its claim expired "
        f"{expired_at:%Y-%m-%d %H:%M:%S} UTC). {by}"
        if expired_at
        else f"Abandoned: the worker running this sync stopped without finishing it. {by}"
    )
    closed = SyncRun.objects.filter(pk=run_id, state=SyncState.RUNNING).update(
        state=SyncState.FAILED, finished_at=now, error=error
    )
    if closed:
        logger.warning("integrations.sync.abandoned", extra={"run_id": run_id, "error": error})


def expired_claims_release() -> int:
    """Free every integration whose claim expired and close its run as abandoned (the beat
    calls this every minute, so a dead worker's run does not stay "running" even when no
    other run of that integration comes to take the claim over)."""
    now = timezone.now()
    released = 0
    expired = Integration.objects.filter(locked_by_run__isnull=False, locked_until__lt=now)
    for integration_id, run_id, until in expired.values_list("pk", "locked_by_run", "locked_until"):
        freed = Integration.objects.filter(
            pk=integration_id, locked_by_run=run_id, locked_until=until
        ).update(locked_by_run=None, locked_until=None)
        if freed:
            released += 1
            _abandon(run_id, expired_at=until, now=now, by="The scheduler released its claim.")
    return released


def heartbeat(run: SyncRun) -> None:
    """Renew the claim; a run that lost it (it stalled past the TTL and another run took the
    integration over) stops rather than writing alongside that run."""
    now = timezone.now()
    renewed = Integration.objects.filter(pk=run.integration_id, locked_by_run=run.pk).update(
        locked_until=now + lock_ttl()
    )
    if not renewed:
        raise ClaimLost(
            f"Stopped: this run's claim expired (no heartbeat for {lock_ttl()}) and was released "
            "or taken over by another run"
        )
    run.heartbeat_at = now
    SyncRun.objects.filter(pk=run.pk).update(heartbeat_at=now)


def claim_release(run: SyncRun) -> None:
    Integration.objects.filter(pk=run.integration_id, locked_by_run=run.pk).update(
        locked_by_run=None, locked_until=None
    )
