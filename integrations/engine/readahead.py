"""Reading ahead: a provider's next reads made on a worker thread while the run writes.

For a provider whose reads may run on a worker thread (``Provider.reads_in_background()``),
the listing reads its next page, and the secondary kinds' first-sync pass the next few
repositories' items, while the current one is written. One worker per run, reading one thing
at a time in the order the run asks for them: the requests are the ones a run without it makes,
in the same order, and a read's error is raised when its turn comes. Stopping waits for a read
under way (the provider's client is not shared) and drops the others.
"""

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime

from integrations.providers.base import RepoRecord

READ_AHEAD = 2  # first-sync reads under way on a worker thread ahead of the pass

_END = object()
_NOT_READ = object()  # a read ahead skipped: the pass had stopped

# A secondary kind's read: (repository data, kind, since, until, limit) → its items.
SecondaryRead = Callable[[dict, str, datetime | None, datetime | None, int], list]


class ListingPages:
    """The listing's pages. With ``ahead``, the next page is read on a worker while the current
    one is written — asked for (:meth:`read_next`) once the current page's catalog files are
    read, so the requests are the ones made without it, in the same order, and a page's error
    is raised when its turn comes."""

    def __init__(self, pages: Iterator[list[RepoRecord]], *, ahead: bool):
        self._pages = pages
        self._executor = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="lantern-listing")
            if ahead
            else None
        )
        self._next: Future | None = None

    def read_next(self) -> None:
        if self._executor is not None and self._next is None:
            self._next = self._executor.submit(next, self._pages, _END)

    def take(self) -> list[RepoRecord] | None:
        """The next page; ``None`` after the last."""
        if self._next is not None:
            future, self._next = self._next, None
            page = future.result()
        else:
            page = next(self._pages, _END)
        return None if page is _END else page

    def close(self) -> None:
        """A page being read is waited for (the client is not shared), then paging stops."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
        close = getattr(self._pages, "close", None)
        if close is not None:
            close()


class FirstSyncReads:
    """The first-sync pass's reads, made ahead on a worker thread for the rows it is about to
    reach (:meth:`rows`), and handed back in turn (:meth:`take`).

    Only reads certain to be made exactly so by the pass are started: a first sync reads
    ``limit`` items since ``start`` unless the run's cap is near, so a read is started only
    while the budget left (``left(kind)``) covers a full first sync beyond every read already
    under way. Near the cap the pass reads as it goes."""

    def __init__(
        self,
        read: SecondaryRead,
        *,
        start: datetime | None,
        limit: int,
        left: Callable[[str], int],
    ):
        self._read = read
        self._start = start
        self._limit = limit
        self._left = left
        # Reads under way on the worker: (repository, kind) → (their arguments, future).
        self._ahead: dict[tuple[int, str], tuple[tuple, Future]] = {}
        self._executor: ThreadPoolExecutor | None = None
        self._halted = False  # no more reads ahead: one failed, or the pass stopped

    def rows(self, rows: Iterator, kind: str) -> Iterator:
        """The pass's rows (discovered records), each yielded once the reads of the next few
        are under way."""
        window: deque = deque()
        ahead = True
        for row in rows:
            window.append(row)
            if ahead and not (row.secondary_state.get(kind) or {}).get("initialized"):
                under_way = sum(1 for pk, kind_ in self._ahead if kind_ == kind)
                if self._left(kind) - self._limit * under_way >= self._limit:
                    arguments = (self._start, None, self._limit)  # as the pass bounds a first sync
                    future = self._worker().submit(self._read_first, row.data, kind)
                    self._ahead[(row.pk, kind)] = (arguments, future)
                else:
                    ahead = False  # this one is read in turn, and so is every later one
            while len(window) > READ_AHEAD or (window and not ahead):
                yield window.popleft()
        yield from window

    def take(self, pk: int, kind: str, arguments: tuple) -> list | None:
        """The items read ahead for this repository and kind with these (since, until, limit),
        or ``None``: read now. A read ahead's error is raised here, in order; one made with
        other arguments is let finish unused."""
        ahead = self._ahead.pop((pk, kind), None)
        if ahead is None:
            return None
        made_with, future = ahead
        if made_with != arguments:
            future.cancel() or future.exception()
            return None
        items = future.result()
        return None if items is _NOT_READ else items

    def _read_first(self, data: dict, kind: str):
        """On the worker: one first-sync read. After a read failed (or the pass stopped) the
        later ones are not made — the pass raises that error first, as it would have had it
        read as it went."""
        if self._halted:
            return _NOT_READ
        try:
            return self._read(data, kind, self._start, None, self._limit)
        except BaseException:
            self._halted = True
            raise

    def _worker(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lantern-read")
        return self._executor

    def stop(self) -> None:
        """Reads not started are dropped; one under way finishes (the client is not shared)."""
        if self._executor is not None:
            self._halted = True
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        self._ahead.clear()
        self._halted = False
