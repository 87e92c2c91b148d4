"""The world's data: its model (accounts, workspaces, projects, repositories, commits, pull
requests), errors and clock, and :class:`WorldStore`, the lookups, listeners and time that the
mutations (:mod:`.mutations`) and persistence (:mod:`.persistence`) build on. :class:`World`
(:mod:`sandbox.world`) composes them."""

import hashlib
import re
import threading
import uuid as uuid_module
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

PR_STATES = ("OPEN", "MERGED", "DECLINED", "SUPERSEDED")
FORK_POLICIES = ("allow_forks", "no_public_forks", "no_forks")
# What a read trap (``World.delete_on_read``, ``World.forbid``) can be set on: a repository's
# pull requests, its commits, or its files (``src``/``raw``, e.g. catalog-info.yaml).
READ_KINDS = ("pull_requests", "commits", "files")


class WorldError(Exception):
    """A mutation or lookup that cannot be done; servers map the subclasses to HTTP statuses."""


class NotFound(WorldError):
    pass


class Conflict(WorldError):
    pass


class Invalid(WorldError):
    pass


class RepositoryGone(NotFound):
    """A read trap deleted the repository as it was read: the server answers its own 404."""


class Denied(WorldError):
    """A read trap refuses a read of a repository's ``kind`` with ``status`` (403 by default),
    each server in its own error body."""

    def __init__(self, message: str, *, status: int, kind: str):
        super().__init__(message)
        self.status = status
        self.kind = kind


def personal_project_key(nickname: str) -> str:
    """A user's personal project on Data Center: ``~`` and the user slug, upper case (the API
    answers ``~JDOE``; paths accept ``~jdoe`` too)."""
    return "~" + nickname.upper()


def utc_now() -> datetime:
    return datetime.now(UTC)


def format_time(value: datetime | None) -> str | None:
    """Bitbucket's timestamps: ISO-8601, microseconds, explicit ``+00:00``."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def slugify(name: str) -> str:
    """Bitbucket derives the slug from the name: lower case, runs of other characters → ``-``
    (so ``Café Über Service`` → ``caf-ber-service``, ``data pipeline (v2)`` →
    ``data-pipeline-v2``; what Bitbucket does with non-ASCII letters is a [guess]: dropped)."""
    slug = re.sub(r"[^a-z0-9_.-]+", "-", name.strip().lower()).strip("-")
    return slug or "repo"


class SandboxClock:
    """Wall-clock time plus an offset tests can advance (token expiry, rate-limit windows)."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def now(self) -> datetime:
        return utc_now() + self.offset

    def timestamp(self) -> float:
        return self.now().timestamp()

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


# -- the model ---------------------------------------------------------------------------------


@dataclass
class Account:
    uuid: str
    account_id: str
    nickname: str
    display_name: str
    email: str
    created_on: datetime
    kind: str = "user"  # "user", or "bot" for the account an access token acts as

    @property
    def raw_author(self) -> str:
        return f"{self.display_name} <{self.email}>"


@dataclass
class Commit:
    hash: str
    date: datetime
    message: str
    author: str  # raw "Name <email>"
    parents: list[str]
    changes: dict[str, bytes | None] = field(default_factory=dict)  # path → content; None deletes


@dataclass
class PullRequest:
    id: int
    title: str
    description: str
    state: str
    author: str  # account uuid
    source_branch: str
    source_commit: str
    destination_branch: str
    destination_commit: str
    created_on: datetime
    updated_on: datetime
    comment_count: int = 0
    task_count: int = 0
    close_source_branch: bool = False
    merge_commit: str | None = None
    closed_by: str | None = None
    reason: str = ""
    reviewers: list[str] = field(default_factory=list)
    approvals: list[str] = field(default_factory=list)


@dataclass
class Project:
    uuid: str
    key: str
    name: str
    description: str
    is_private: bool
    created_on: datetime
    updated_on: datetime
    owner: str | None = None  # account uuid: a user's personal project (``~USER``, Data Center)

    @property
    def personal(self) -> bool:
        return self.owner is not None


@dataclass
class ReadTrap:
    """What happens on the next read of one kind of a repository's data: ``delete`` (the
    repository is deleted as it is read, and the read answers 404) or ``deny`` (``status``)."""

    kind: str
    action: str
    status: int = 403


@dataclass
class Repository:
    uuid: str
    slug: str
    name: str
    workspace: str  # slug
    project_key: str | None  # None: no project (a Cloud repository outside any project)
    description: str
    language: str
    is_private: bool
    created_on: datetime
    updated_on: datetime
    size: int
    mainbranch: str | None  # None: an empty repository
    fork_policy: str = "no_public_forks"
    website: str = ""
    has_issues: bool = False
    has_wiki: bool = False
    branches: dict[str, str] = field(default_factory=dict)  # name → tip hash
    commits: dict[str, Commit] = field(default_factory=dict)
    pull_requests: dict[int, PullRequest] = field(default_factory=dict)

    @property
    def full_name(self) -> str:
        return f"{self.workspace}/{self.slug}"

    def resolve(self, revision: str) -> Commit | None:
        """A branch name, a full hash or an unambiguous prefix of at least 7 characters."""
        if revision in self.branches:
            return self.commits[self.branches[revision]]
        if revision in self.commits:
            return self.commits[revision]
        if len(revision) >= 7 and re.fullmatch(r"[0-9a-f]+", revision):
            matches = [h for h in self.commits if h.startswith(revision)]
            if len(matches) == 1:
                return self.commits[matches[0]]
        return None

    def history(self, *tips: str) -> list[Commit]:
        """Every ancestor of the tips (themselves included), newest first, like ``git log``."""
        seen: set[str] = set()
        stack = list(tips)
        found: list[Commit] = []
        while stack:
            sha = stack.pop()
            if sha in seen or sha not in self.commits:
                continue
            seen.add(sha)
            commit = self.commits[sha]
            found.append(commit)
            stack.extend(commit.parents)
        found.sort(key=lambda c: (c.date, c.hash), reverse=True)
        return found

    def read_file(self, commit: Commit, path: str) -> bytes | None:
        """Walk first parents until the path was last written (changes are deltas)."""
        current: Commit | None = commit
        while current is not None:
            if path in current.changes:
                return current.changes[path]
            current = self.commits.get(current.parents[0]) if current.parents else None
        return None

    def tree(self, commit: Commit) -> dict[str, bytes]:
        """All files at a commit."""
        chain: list[Commit] = []
        current: Commit | None = commit
        while current is not None:
            chain.append(current)
            current = self.commits.get(current.parents[0]) if current.parents else None
        files: dict[str, bytes] = {}
        for item in reversed(chain):
            for path, content in item.changes.items():
                if content is None:
                    files.pop(path, None)
                else:
                    files[path] = content
        return files


@dataclass
class Workspace:
    uuid: str
    slug: str
    name: str
    is_private: bool
    created_on: datetime
    members: list[str] = field(default_factory=list)  # account uuids
    projects: dict[str, Project] = field(default_factory=dict)  # key → project
    repositories: dict[str, Repository] = field(default_factory=dict)  # slug → repository


@dataclass
class WorldEvent:
    """A change, in neutral terms; each server turns it into its own webhook payloads.

    ``kind``: ``repository.created|updated|deleted``, ``push``, ``pullrequest.created|updated|
    merged|declined|approved|unapproved|comment_created``.
    """

    kind: str
    workspace: str
    repository: Repository
    actor: str | None
    data: dict = field(default_factory=dict)


Listener = Callable[[WorldEvent], None]


# -- the store ---------------------------------------------------------------------------------


class WorldStore:
    """The data and its lookups, under one re-entrant lock (``lock``)."""

    def __init__(self, *, clock: SandboxClock | None = None):
        self.lock = threading.RLock()
        self.clock = clock or SandboxClock()
        self.workspaces: dict[str, Workspace] = {}
        self.accounts: dict[str, Account] = {}
        self._listeners: list[Listener] = []
        self._last_tick: datetime | None = None
        self._counter = 0
        self.read_traps: dict[tuple[str, str], ReadTrap] = {}  # (repo uuid, kind) → trap

    # -- listeners and time --------------------------------------------------------------------

    def subscribe(self, listener: Listener) -> None:
        with self.lock:
            self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        with self.lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def _emit(self, kind: str, repo: Repository, actor: str | None, **data: Any) -> None:
        event = WorldEvent(kind, repo.workspace, repo, actor, data)
        for listener in list(self._listeners):
            listener(event)

    def not_before(self, moment: datetime) -> None:
        """Mutations from now on happen after ``moment`` (a generated or loaded world may reach
        past the clock)."""
        with self.lock:
            if self._last_tick is None or self._last_tick < moment:
                self._last_tick = moment

    def tick(self) -> datetime:
        """The time of a mutation: the clock, but strictly increasing so values stay unique."""
        with self.lock:
            now = self.clock.now()
            if self._last_tick is not None and now <= self._last_tick:
                now = self._last_tick + timedelta(microseconds=1)
            self._last_tick = now
            return now

    def _new_hash(self, *parts: str) -> str:
        self._counter += 1
        text = ":".join((*parts, str(self._counter), str(self.clock.timestamp())))
        return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()

    @staticmethod
    def new_uuid() -> str:
        return "{" + str(uuid_module.uuid4()) + "}"

    # -- lookups -------------------------------------------------------------------------------

    def workspace(self, key: str) -> Workspace:
        """By slug or by ``{uuid}``."""
        with self.lock:
            if key in self.workspaces:
                return self.workspaces[key]
            for workspace in self.workspaces.values():
                if workspace.uuid == key:
                    return workspace
        raise NotFound(f"No workspace with identifier '{key}'.")

    def repository(self, workspace: str, key: str) -> Repository:
        """By slug or by ``{uuid}``; the workspace ``{}`` finds a repository by uuid alone."""
        with self.lock:
            candidates: Iterable[Workspace]
            if workspace == "{}":
                candidates = self.workspaces.values()
            else:
                candidates = [self.workspace(workspace)]
            for ws in candidates:
                if key in ws.repositories:
                    return ws.repositories[key]
                for repo in ws.repositories.values():
                    if repo.uuid == key:
                        return repo
        raise NotFound(f"Repository {workspace}/{key} not found")

    def pull_request(self, repo: Repository, pr_id: int) -> PullRequest:
        try:
            return repo.pull_requests[int(pr_id)]
        except (KeyError, ValueError):
            raise NotFound(f"Pull request {pr_id} not found") from None

    def iter_repositories(self) -> Iterator[Repository]:
        with self.lock:
            for workspace in self.workspaces.values():
                yield from workspace.repositories.values()

    def account(self, uuid: str | None) -> Account | None:
        return self.accounts.get(uuid) if uuid else None

    def account_by_email(self, email: str) -> Account | None:
        email = email.strip().lower()
        for account in self.accounts.values():
            if account.email.lower() == email:
                return account
        return None

    def default_actor(self, workspace: str) -> str | None:
        members = self.workspace(workspace).members
        return members[0] if members else None

    def find_account(self, value: str) -> Account:
        """An account by uuid, nickname or e-mail."""
        for account in self.accounts.values():
            if value in (account.uuid, account.nickname, account.email):
                return account
        raise NotFound(f"No account {value!r}")

    def summary(self) -> dict:
        with self.lock:
            repos = list(self.iter_repositories())
            return {
                "workspaces": [
                    {
                        "slug": ws.slug,
                        "projects": sorted(ws.projects),
                        "repositories": len(ws.repositories),
                    }
                    for ws in self.workspaces.values()
                ],
                "repositories": len(repos),
                "pull_requests": sum(len(r.pull_requests) for r in repos),
                "commits": sum(len(r.commits) for r in repos),
            }
