"""A short-lived cache of bare git clones for write-back, and the commit built in one.

Writing one file into a repository needs its objects; fetching them again for every write of a
bulk run would cost a full clone each time. A clone is kept under ``LANTERN_GIT_CACHE_DIR`` and
reused (fetched into, not cloned again) for ``LANTERN_GIT_CACHE_SECONDS`` after it was made;
past that it is made again. The folder is bounded by ``LANTERN_GIT_CACHE_MAX_MB``: after each
use the least recently used clones are removed until it fits (the one in use is kept). One
write at a time per clone, across threads (a lock per clone) and processes (``flock`` on a file
beside it).

The commit itself is built with dulwich's objects whatever carries it over the network (dulwich
or the git CLI): the parent's tree with the given files put in, as a commit of one parent.
"""

import fcntl
import hashlib
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from django.conf import settings
from dulwich.objects import Blob, Commit, Tree
from dulwich.repo import Repo

logger = logging.getLogger(__name__)

MiB = 1024 * 1024
STAMP = "lantern-created"  # the file whose content is the clone's creation time
FILE_MODE = 0o100644
TREE_MODE = 0o040000


@dataclass
class CacheStats:
    created: int = 0
    reused: int = 0
    expired: int = 0
    evicted: int = 0


@dataclass
class CloneEntry:
    """A clone checked out of the cache: ``repo`` is a bare repository; ``reused`` when it was
    made by an earlier write within the cache's window (so a fetch brings only what is new)."""

    key: str
    path: str
    repo: Repo
    reused: bool


@dataclass
class CloneCache:
    root: str
    max_age: float
    max_bytes: int
    stats: CacheStats = field(default_factory=CacheStats)

    def __post_init__(self) -> None:
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._in_use: set[str] = set()

    @staticmethod
    def key_for(url: str) -> str:
        """A folder name for a repository URL (given without credentials)."""
        return hashlib.sha256(url.encode()).hexdigest()[:32]

    def _lock(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def _created(self, path: str) -> float | None:
        try:
            with open(os.path.join(path, STAMP)) as handle:
                return float(handle.read().strip())
        except (OSError, ValueError):
            return None

    @contextmanager
    def checkout(self, url: str) -> Iterator[CloneEntry]:
        """The clone of ``url``, held for this write alone; its use time is recorded for LRU."""
        key = self.key_for(url)
        path = os.path.join(self.root, key)
        with self._lock(key), open(os.path.join(self.root, f"{key}.lock"), "w") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            with self._guard:
                self._in_use.add(key)
            try:
                created = self._created(path)
                if created is not None and time.time() - created > self.max_age:
                    shutil.rmtree(path, ignore_errors=True)
                    self.stats.expired += 1
                    created = None
                if created is None or not os.path.isdir(os.path.join(path, "objects")):
                    shutil.rmtree(path, ignore_errors=True)
                    repo = Repo.init_bare(path, mkdir=True)
                    with open(os.path.join(path, STAMP), "w") as handle:
                        handle.write(str(time.time()))
                    self.stats.created += 1
                    reused = False
                else:
                    repo = Repo(path)
                    self.stats.reused += 1
                    reused = True
                os.utime(path)
                try:
                    yield CloneEntry(key=key, path=path, repo=repo, reused=reused)
                finally:
                    repo.close()
                    os.utime(path)
            finally:
                with self._guard:
                    self._in_use.discard(key)
                fcntl.flock(lock_file, fcntl.LOCK_UN)
        self.evict()

    def size(self, path: str) -> int:
        total = 0
        for folder, _dirs, files in os.walk(path):
            for name in files:
                try:
                    total += os.lstat(os.path.join(folder, name)).st_size
                except OSError:
                    continue
        return total

    def entries(self) -> list[tuple[float, str, int]]:
        """(last used, key, bytes) of each clone, least recently used first."""
        found = []
        for name in os.listdir(self.root):
            path = os.path.join(self.root, name)
            if name.endswith(".lock") or not os.path.isdir(path):
                continue
            found.append((os.stat(path).st_mtime, name, self.size(path)))
        return sorted(found)

    def evict(self) -> None:
        """Remove the least recently used clones (not one in use) until the folder fits."""
        entries = self.entries()
        total = sum(size for _used, _key, size in entries)
        for _used, key, size in entries:
            if total <= self.max_bytes:
                return
            with self._guard:
                if key in self._in_use:
                    continue
            if not self._lock(key).acquire(blocking=False):
                continue
            try:
                shutil.rmtree(os.path.join(self.root, key), ignore_errors=True)
            finally:
                self._lock(key).release()
            total -= size
            self.stats.evicted += 1
            logger.info("integrations.gitcache.evicted", extra={"clone": key, "bytes": size})


_caches: dict[tuple, CloneCache] = {}
_caches_lock = threading.Lock()


def clone_cache() -> CloneCache:
    """The process's cache for the current settings."""
    root = settings.LANTERN_GIT_CACHE_DIR or os.path.join(
        tempfile.gettempdir(), f"lantern-git-cache-{os.getuid()}"
    )
    config = (root, settings.LANTERN_GIT_CACHE_SECONDS, settings.LANTERN_GIT_CACHE_MAX_MB)
    with _caches_lock:
        if config not in _caches:
            _caches[config] = CloneCache(
                root=root, max_age=float(config[1]), max_bytes=int(config[2]) * MiB
            )
        return _caches[config]


# -- building the commit -----------------------------------------------------------------------


def tree_blob(repo: Repo, tree_id: bytes | None, path: str) -> bytes | None:
    """The blob id at ``path`` in a tree (None when absent or not a file)."""
    if tree_id is None:
        return None
    current = tree_id
    parts = path.encode().split(b"/")
    for index, part in enumerate(parts):
        tree = repo.object_store[current]
        if not isinstance(tree, Tree) or part not in tree:
            return None
        mode, sha = tree[part]
        if index == len(parts) - 1:
            return None if mode == TREE_MODE else sha
        if mode != TREE_MODE:
            return None
        current = sha
    return None


def _tree_with(repo: Repo, tree_id: bytes | None, parts: list[bytes], blob: bytes) -> bytes:
    tree = Tree()
    if tree_id is not None:
        for item in repo.object_store[tree_id].items():
            tree.add(item.path, item.mode, item.sha)
    name = parts[0]
    if len(parts) == 1:
        tree.add(name, FILE_MODE, blob)
    else:
        child = None
        if tree_id is not None and name in tree:
            mode, sha = tree[name]
            child = sha if mode == TREE_MODE else None
        tree.add(name, TREE_MODE, _tree_with(repo, child, parts[1:], blob))
    repo.object_store.add_object(tree)
    return tree.id


def commit_build(
    repo: Repo, *, parent: bytes, files: dict[str, bytes], message: str, author: str
) -> bytes:
    """A commit on ``parent`` whose tree is the parent's with ``files`` (path → content) put
    in; its id (written to the object store, no ref moved)."""
    tree_id = repo.object_store[parent].tree
    for path, content in files.items():
        blob = Blob.from_string(content)
        repo.object_store.add_object(blob)
        tree_id = _tree_with(repo, tree_id, path.encode().split(b"/"), blob.id)
    commit = Commit()
    commit.tree = tree_id
    commit.parents = [parent]
    commit.author = commit.committer = author.encode()
    commit.author_time = commit.commit_time = int(time.time())
    commit.author_timezone = commit.commit_timezone = 0
    commit.encoding = b"UTF-8"
    commit.message = message.encode() if message.endswith("\n") else message.encode() + b"\n"
    repo.object_store.add_object(commit)
    return commit.id
