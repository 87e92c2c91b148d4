"""Who else hears that pull requests or commits were ingested.

The engine writes secondary kinds in bulk; apps that derive something from them (scorecards'
metrics) subscribe here instead of being imported by the engine, so the dependency keeps running
one way. Like the catalog's entity changes, a notification is delivered once, after the writing
transaction commits, and a subscriber's exception never reaches the engine.
"""

import logging
from collections.abc import Callable, Iterable

from django.db import transaction

logger = logging.getLogger(__name__)

SecondaryChangesCallback = Callable[[set[int]], None]
_subscribers: list[SecondaryChangesCallback] = []


def secondary_changes_subscribe(callback: SecondaryChangesCallback) -> None:
    """Call ``callback(discovered_ids)`` after each commit that wrote pull requests or commits
    of those discovered repositories. Subscribe from ``AppConfig.ready()``."""
    if callback not in _subscribers:
        _subscribers.append(callback)


def secondary_changes_unsubscribe(callback: SecondaryChangesCallback) -> None:
    if callback in _subscribers:
        _subscribers.remove(callback)


def secondary_changes_notify(*, discovered_ids: Iterable[int]) -> None:
    """Tell the subscribers, once the current transaction commits (at once in autocommit)."""
    ids = set(discovered_ids)
    if not ids or not _subscribers:
        return
    transaction.on_commit(lambda: _deliver(ids))


def _deliver(ids: set[int]) -> None:
    for callback in list(_subscribers):
        try:
            callback(set(ids))
        except Exception:
            logger.exception(
                "integrations.secondary_changes.subscriber_failed", extra={"repositories": len(ids)}
            )
