"""The shared request budget: requests per credential per clock hour, counted by every process
on every host, in Redis (``INCR`` + ``EXPIRE`` in one transaction) when
``LANTERN_REQUEST_BUDGET_STORE`` is a ``redis://`` URL — by default the Celery broker — and
otherwise in a database table (one ``INSERT … ON CONFLICT … DO UPDATE … RETURNING``, PostgreSQL
or SQLite ≥ 3.35), never in process memory.

The database store uses a connection of its own in autocommit, so a count is committed at once
and no sync's transaction holds the counter's row lock.
"""

import functools
import threading
import time
from typing import Protocol

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections

WINDOW_SECONDS = 3600


def current_window() -> int:
    return int(time.time() // WINDOW_SECONDS)


class BudgetStore(Protocol):
    def take(self, key: str, window: int) -> int:
        """Count one request; the requests counted in the window, this one included."""

    def raise_to(self, key: str, window: int, used: int) -> None:
        """At least ``used`` requests are spent in the window (what the server reported)."""


class RedisBudgetStore:
    _RAISE = (
        "local used = tonumber(redis.call('GET', KEYS[1]) or '0') "
        "if used < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2]) end "
        "return 0"
    )

    def __init__(self, url: str):
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)

    def _key(self, key: str, window: int) -> str:
        return f"{settings.LANTERN_REQUEST_BUDGET_PREFIX}:{key}:{window}"

    def take(self, key: str, window: int) -> int:
        name = self._key(key, window)
        pipe = self._redis.pipeline(transaction=True)
        pipe.incr(name)
        pipe.expire(name, WINDOW_SECONDS + 100)
        used, _ = pipe.execute()
        return int(used)

    def raise_to(self, key: str, window: int, used: int) -> None:
        self._redis.eval(self._RAISE, 1, self._key(key, window), used, WINDOW_SECONDS + 100)


class DatabaseBudgetStore:
    # Constant SQL (the table and its reserved-word column spelled out).
    _TAKE = """
        INSERT INTO integrations_requestbudgetusage (budget_key, "window", used)
        VALUES (%s, %s, 1)
        ON CONFLICT (budget_key, "window")
        DO UPDATE SET used = integrations_requestbudgetusage.used + 1
        RETURNING used
    """
    _RAISE = """
        INSERT INTO integrations_requestbudgetusage (budget_key, "window", used)
        VALUES (%s, %s, %s)
        ON CONFLICT (budget_key, "window")
        DO UPDATE SET used = CASE
            WHEN integrations_requestbudgetusage.used < excluded.used THEN excluded.used
            ELSE integrations_requestbudgetusage.used
        END
    """
    _PRUNE = 'DELETE FROM integrations_requestbudgetusage WHERE "window" < %s'

    def __init__(self):
        self._local = threading.local()

    def _connection(self):
        """SQLite has one writer anyway: its default connection. Elsewhere a connection of the
        thread's own, kept open and replaced when it breaks."""
        default = connections[DEFAULT_DB_ALIAS]
        if default.vendor == "sqlite":
            return default
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = connections.create_connection(DEFAULT_DB_ALIAS)
            self._local.connection = connection
        connection.close_if_unusable_or_obsolete()
        return connection

    def close(self) -> None:
        """Close this thread's own connection (a test database can then be dropped)."""
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None

    def _key(self, key: str) -> str:
        return f"{settings.LANTERN_REQUEST_BUDGET_PREFIX}:{key}"[:200]

    def take(self, key: str, window: int) -> int:
        with self._connection().cursor() as cursor:
            cursor.execute(self._TAKE, [self._key(key), window])
            return int(cursor.fetchone()[0])

    def raise_to(self, key: str, window: int, used: int) -> None:
        with self._connection().cursor() as cursor:
            cursor.execute(self._RAISE, [self._key(key), window, used])

    def prune(self, *, before: int) -> int:
        """Drop the counts of windows before ``before`` (past hours are never read again)."""
        with self._connection().cursor() as cursor:
            cursor.execute(self._PRUNE, [before])
            return cursor.rowcount


_opened: list = []


@functools.lru_cache(maxsize=4)
def _store(spec: str) -> BudgetStore:
    if spec.startswith(("redis://", "rediss://", "unix://")):
        return RedisBudgetStore(spec)
    if spec == "database":
        store = DatabaseBudgetStore()
        _opened.append(store)
        return store
    raise ValueError(
        f"LANTERN_REQUEST_BUDGET_STORE must be a redis:// URL or 'database', not {spec!r}"
    )


def budget_stores_close() -> None:
    """Close the database stores' connections of this thread."""
    for store in _opened:
        if isinstance(store, DatabaseBudgetStore):
            store.close()


def budget_store() -> BudgetStore:
    """The store ``LANTERN_REQUEST_BUDGET_STORE`` names (one per process)."""
    return _store(settings.LANTERN_REQUEST_BUDGET_STORE)


def past_windows_prune() -> int:
    """Drop the database's counts of hours before the last one (Redis expires its own keys);
    returns how many rows went."""
    store = budget_store()
    if not isinstance(store, DatabaseBudgetStore):
        return 0
    return store.prune(before=current_window() - 1)
