"""Secondary kinds (pull requests, commits): what to fetch for each repository in a run.

Per repository and kind, ``DiscoveredEntity.secondary_state[kind]`` records the window of time
already ingested — ``newest`` and ``oldest`` item timestamps — plus ``gaps`` left when the
per-run cap cut an incremental fetch, whether older items remain (``exhausted``) and how many of
the first-sync 50 are still owed (``first_remaining``). Each run, within the per-kind cap:

1. new and updated items since ``newest`` (only for repositories that changed) and open gaps;
2. the first sync — the 50 most recent items — of repositories that never had one;
3. backfill below ``oldest``: the rest of a cut first sync, and with a start date, everything
   back to it.

Every fetch is bounded ``since < t <= until`` (items already stored at ``until``, where an earlier
fetch was cut, are dropped), so re-running after a crash refetches at most what was not recorded,
and upserts by external id keep it duplicate-free.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from integrations import events
from integrations.choices import DiscoveredState, SecondaryKind
from integrations.engine.processing import RunErrors, provider_record_error, repository_scoped
from integrations.engine.readahead import FirstSyncReads
from integrations.engine.writeback import writebacks_follow_pull_requests
from integrations.models import Commit, DiscoveredEntity, PullRequest
from integrations.providers.base import (
    CommitRecord,
    Provider,
    ProviderError,
    ProviderUnavailable,
    PullRequestRecord,
)
from portal.bulk import rows_update, rows_upsert

FIRST_SYNC_LIMIT = 50
RUN_CAP = 5000
FLUSH_REPOSITORIES = 200  # fetched items and states are written together, this many repos at once
# Repositories in a row whose reads kept failing (retries exhausted) before the provider, not
# the repositories, is taken to be down and the run fails.
UNAVAILABLE_IN_A_ROW = 3


@dataclass
class Budget:
    left: dict[str, int] = field(
        default_factory=lambda: {kind: RUN_CAP for kind in SecondaryKind.values}
    )
    written: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SecondaryKind.values, 0))

    def spend(self, kind: str, count: int) -> None:
        self.left[kind] -= count
        self.written[kind] += count


def start_datetime(integration) -> datetime | None:
    """The integration's start date as the instant nothing older is ingested from."""
    if integration.start_date is None:
        return None
    return datetime.combine(integration.start_date, datetime.min.time(), tzinfo=UTC)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _dt(value: str | None) -> datetime | None:
    return parse_datetime(value) if value else None


def _stamp(kind: str, item) -> datetime:
    return item.updated_on if kind == SecondaryKind.PULL_REQUESTS else item.date


def _key(kind: str, item) -> str:
    return item.external_id if kind == SecondaryKind.PULL_REQUESTS else item.hash


def _stored_at(discovered_id: int, kind: str, stamp: datetime) -> set[str]:
    """Ids of the items of a repository already stored with exactly this timestamp."""
    if kind == SecondaryKind.PULL_REQUESTS:
        rows = PullRequest.objects.filter(discovered_id=discovered_id, updated_on=stamp)
        return set(rows.values_list("external_id", flat=True))
    rows = Commit.objects.filter(discovered_id=discovered_id, date=stamp)
    return set(rows.values_list("hash", flat=True))


def _fetcher(provider: Provider, kind: str) -> Callable:
    return (
        provider.iter_pull_requests
        if kind == SecondaryKind.PULL_REQUESTS
        else provider.iter_commits
    )


def upsert_pull_requests(items: Iterable[tuple[int, PullRequestRecord]]) -> int:
    """Create or update pull requests, given as (discovered id, record), in bulk."""
    rows = [
        {
            "discovered_id": discovered_id,
            "external_id": item.external_id,
            "title": item.title[:500],
            "state": item.state,
            "author": item.author[:255],
            "source_branch": item.source_branch[:255],
            "destination_branch": item.destination_branch[:255],
            "url": item.url,
            "created_on": item.created_on,
            "updated_on": item.updated_on,
            "data": item.raw,
        }
        for discovered_id, item in items
    ]
    if rows:
        update = list(rows[0])[2:]
        rows_upsert(PullRequest, rows, unique=["discovered_id", "external_id"], update=update)
        # The pull requests write-back opened take the state just read (open → merged...).
        writebacks_follow_pull_requests(
            [(row["discovered_id"], row["external_id"], row["state"]) for row in rows]
        )
    return len(rows)


def upsert_commits(items: Iterable[tuple[int, CommitRecord]]) -> int:
    """Create or update commits, given as (discovered id, record), in bulk."""
    rows = [
        {
            "discovered_id": discovered_id,
            "hash": item.hash,
            "message": item.message,
            "author": item.author[:255],
            "url": item.url,
            "date": item.date,
            "data": item.raw,
        }
        for discovered_id, item in items
    ]
    if rows:
        rows_upsert(Commit, rows, unique=["discovered_id", "hash"], update=list(rows[0])[2:])
    return len(rows)


def _states_write(states: dict[int, dict]) -> None:
    """Set ``secondary_state`` of these repositories (id → state) in one statement."""
    rows_update(DiscoveredEntity, {pk: {"secondary_state": state} for pk, state in states.items()})


_UPSERT = {SecondaryKind.PULL_REQUESTS: upsert_pull_requests, SecondaryKind.COMMITS: upsert_commits}


class SecondarySync:
    """One run's secondary-kind work for an integration."""

    def __init__(
        self,
        *,
        provider: Provider,
        kinds: list[str],
        start: datetime | None,
        budget: Budget | None = None,
        on_progress: Callable[[], None] | None = None,
        sweep: set[int] | None = None,
        errors: RunErrors | None = None,
    ):
        self.provider = provider
        self.kinds = [kind for kind in SecondaryKind.values if kind in kinds]
        self.start = start
        self.budget = budget or Budget()
        self.on_progress = on_progress or (lambda: None)
        # Repositories checked for new items even though they did not change themselves.
        self.sweep = sweep or set()
        # A repository whose reads fail is recorded here and the pass goes on with the others.
        self.errors = errors if errors is not None else RunErrors()
        self._unavailable_in_a_row = 0
        self.now = timezone.now()
        # Fetched but not yet written: items by (repository, key) and repositories' new states.
        self._items: dict[str, dict[tuple[int, str], object]] = {kind: {} for kind in self.kinds}
        self._states: dict[int, dict] = {}
        self._reads_ahead = FirstSyncReads(
            self._read_now,
            start=start,
            limit=FIRST_SYNC_LIMIT,
            left=lambda kind: self.budget.left[kind],
        )

    def _flush(self) -> None:
        """Write what was fetched since the last flush with the states that record it, in one
        transaction: a crash loses at most a flush's worth of fetches, which the next run makes
        again (the states still say they are owed)."""
        if not self._states and not any(self._items.values()):
            return
        with transaction.atomic():
            for kind, items in self._items.items():
                if items:
                    _UPSERT[kind]([(pk, item) for (pk, _), item in items.items()])
            _states_write(self._states)
            written = {pk for items in self._items.values() for pk, _ in items}
            events.secondary_changes_notify(discovered_ids=written)
        self._items = {kind: {} for kind in self.kinds}
        self._states = {}
        self.errors.flush()

    # -- one fetch --------------------------------------------------------------------------

    def _fetch(self, discovered, kind, *, since, until, limit) -> list:
        if limit <= 0:
            return []
        if self.start and (since is None or since < self.start):
            since = self.start
        # ``until`` is the timestamp of an item already stored, where an earlier fetch was cut:
        # items sharing it (commit dates have one-second resolution) may not be stored yet, so
        # fetch up to and including it and drop the ones that are.
        stored = set()
        if until is not None:
            pending = self._items[kind]
            stored = _stored_at(discovered.pk, kind, until) | {
                key
                for (pk, key), item in pending.items()
                if pk == discovered.pk and _stamp(kind, item) == until
            }
        if until is not None:
            until += timedelta(microseconds=1)
        fetch_limit = limit + len(stored)
        items = self._read(discovered, kind, since=since, until=until, limit=fetch_limit)
        # The provider bounds the fetch; the engine re-checks, so a sloppy provider cannot make it
        # ingest data older than the start date.
        items = [
            item
            for item in items
            if (since is None or _stamp(kind, item) > since)
            and (until is None or _stamp(kind, item) < until)
            and _key(kind, item) not in stored
        ][:limit]
        pending = self._items[kind]
        for item in items:
            pending[(discovered.pk, _key(kind, item))] = item
        self.budget.spend(kind, len(items))
        self.on_progress()
        return items

    def _read(self, discovered, kind, *, since, until, limit) -> list:
        """The provider's items: read ahead on the worker (see :mod:`.readahead`) or now."""
        items = self._reads_ahead.take(discovered.pk, kind, (since, until, limit))
        if items is None:
            items = self._read_now(discovered.data, kind, since, until, limit)
        return items

    def _read_now(self, data: dict, kind: str, since, until, limit: int) -> list:
        read = _fetcher(self.provider, kind)(data, since=since, until=until, limit=limit)
        return list(read)[:limit]

    # -- the three passes ---------------------------------------------------------------------

    def run(self, discovered: QuerySet[DiscoveredEntity]) -> None:
        # Repositories that failed before go first, so they get the run's budget.
        active = discovered.exclude(state=DiscoveredState.GONE).order_by(
            F("error_since").asc(nulls_last=True), "pk"
        )
        for kind in self.kinds:
            for step in (self._incremental, self._first_sync, self._backfill):
                rows = active.iterator(chunk_size=500)
                passing = rows
                if step == self._first_sync and self.provider.reads_in_background():
                    passing = self._reads_ahead.rows(rows, kind)
                try:
                    for row in passing:
                        if self.budget.left[kind] <= 0:
                            break
                        state = dict(row.secondary_state.get(kind) or {})
                        try:
                            stepped = step(row, kind, state)
                        except ProviderError as exc:
                            self._repository_failed(row, kind, exc)
                            continue
                        self._unavailable_in_a_row = 0
                        if stepped:
                            self.errors.succeed([row.pk], kind)
                            row.secondary_state = {**row.secondary_state, kind: state}
                            self._states[row.pk] = row.secondary_state
                            if len(self._states) >= FLUSH_REPOSITORIES:
                                self._flush()
                finally:
                    self._reads_ahead.stop()
                    # Now, not when an error's traceback lets go of them: the database cursor
                    # must close in the transaction it was opened in.
                    passing.close()
                    rows.close()
                # The next pass reads the states this one wrote.
                self._flush()

    def _repository_failed(self, row, kind: str, exc: ProviderError) -> None:
        """Record a failed read on its repository, whose state stays as it was (so the next run
        asks again), and go on; unless the failure is the run's (credentials, budget) or the
        provider itself looks down (several repositories in a row out of retries)."""
        if not repository_scoped(exc):
            raise exc
        if isinstance(exc, ProviderUnavailable) and exc.status is None:
            self._unavailable_in_a_row += 1
            if self._unavailable_in_a_row >= UNAVAILABLE_IN_A_ROW:
                raise exc
        self.errors.fail(row.pk, row.name, provider_record_error(kind, exc))

    def _incremental(self, row, kind, state) -> bool:
        if not state.get("initialized"):
            return False
        changed = False
        repo_stamp = _iso(row.source_updated_at)
        swept = row.pk in self.sweep
        if repo_stamp is None or state.get("repo_updated") != repo_stamp or swept:
            newest = _dt(state.get("newest"))
            limit = self.budget.left[kind]
            items = self._fetch(row, kind, since=newest, until=None, limit=limit)
            if items:
                stamps = [_stamp(kind, item) for item in items]
                if len(items) >= limit and newest is not None:
                    # Cut by the cap: what lies between the old newest and what we got is a gap.
                    state.setdefault("gaps", []).append([_iso(newest), _iso(min(stamps))])
                state["newest"] = _iso(max([*stamps, *([newest] if newest else [])]))
                if state.get("oldest") is None:
                    state["oldest"] = _iso(min(stamps))
            if len(items) < limit:
                state["repo_updated"] = repo_stamp
                state["swept_at"] = _iso(self.now)
            changed = True
        open_gaps = []
        for since, until in state.get("gaps", []):
            limit = self.budget.left[kind]
            if limit <= 0:
                open_gaps.append([since, until])
                continue
            items = self._fetch(row, kind, since=_dt(since), until=_dt(until), limit=limit)
            if len(items) >= limit:
                open_gaps.append([since, _iso(min(_stamp(kind, i) for i in items))])
            changed = True
        if "gaps" in state:
            state["gaps"] = open_gaps
        return changed

    def _first_sync(self, row, kind, state) -> bool:
        if state.get("initialized"):
            return False
        limit = min(FIRST_SYNC_LIMIT, self.budget.left[kind])
        items = self._fetch(row, kind, since=None, until=None, limit=limit)
        stamps = [_stamp(kind, item) for item in items]
        exhausted = len(items) < limit
        state.update(
            initialized=True,
            newest=_iso(max(stamps)) if stamps else None,
            oldest=_iso(min(stamps)) if stamps else None,
            exhausted=exhausted,
            start=_iso(self.start),
            first_remaining=0 if exhausted else FIRST_SYNC_LIMIT - len(items),
            repo_updated=_iso(row.source_updated_at),
            swept_at=_iso(self.now),
            gaps=[],
        )
        return True

    def _backfill(self, row, kind, state) -> bool:
        if not state.get("initialized"):
            return False
        if state.get("exhausted"):
            # Exhausted back to the start date of then: a first or an earlier one reopens it.
            then = _dt(state.get("start"))
            if self.start is None or (then is not None and then <= self.start):
                return False
            state["exhausted"] = False
        owed = state.get("first_remaining", 0)
        if self.start is None and owed <= 0:
            return False
        limit = self.budget.left[kind] if self.start else min(owed, self.budget.left[kind])
        oldest = _dt(state.get("oldest"))
        items = self._fetch(row, kind, since=None, until=oldest, limit=limit)
        if items:
            state["oldest"] = _iso(min(_stamp(kind, item) for item in items))
            if state.get("newest") is None:
                state["newest"] = _iso(max(_stamp(kind, item) for item in items))
        state["first_remaining"] = max(0, owed - len(items))
        if len(items) < limit or (self.start is None and state["first_remaining"] == 0):
            state["exhausted"] = len(items) < limit
            if self.start is None:
                state["exhausted"] = True
            state["start"] = _iso(self.start)
        return True
