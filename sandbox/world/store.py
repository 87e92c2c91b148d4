"""A provider-neutral, in-memory world of workspaces, projects and repositories.

The sandbox servers (Bitbucket Cloud today) serve this world through their own API shapes; tests
change it between syncs through the mutation methods below, which behave as the real service does
(a push or a repository edit bumps ``updated_on``; every change is announced to listeners so the
servers can deliver webhooks).

Edge cases real instances have are built in: ``edge_cases()`` adds a personal project (``~USER``)
and oddly named repositories; ``delete_on_read`` and ``forbid`` set read traps (a repository deleted
between the listing and its pull-request read, a 403 on its pull requests, commits or files); and
``repository_set_visibility`` flips a repository between private and public.

Everything is guarded by one re-entrant lock (``world.lock``): servers read under it so a response
is a consistent snapshot, and listeners run under it so a webhook payload describes exactly the
change that caused it.
"""

import base64
import hashlib
import json
import re
import threading
import uuid as uuid_module
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sandbox.credentials import Credentials

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


# -- the world ---------------------------------------------------------------------------------


class World:
    def __init__(self, *, clock: SandboxClock | None = None):
        self.lock = threading.RLock()
        self.clock = clock or SandboxClock()
        self.workspaces: dict[str, Workspace] = {}
        self.accounts: dict[str, Account] = {}
        self.credentials = Credentials(self)
        self._listeners: list[Listener] = []
        self._last_tick: datetime | None = None
        self._counter = 0
        self.read_traps: dict[tuple[str, str], ReadTrap] = {}  # (repo uuid, kind) → trap

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def generate(
        cls,
        seed: int = 0,
        *,
        workspaces: int = 1,
        projects: int = 3,
        repos: int = 300,
        prs_per_repo: int = 5,
        commits_per_repo: int = 10,
        users: int = 8,
        now: datetime | None = None,
    ) -> "World":
        """A deterministic world: the same seed, sizes and ``now`` give the same world.

        ``now`` defaults to today's midnight (UTC) so the world is stable for a day; every
        generated timestamp is unique and lies in the year before ``now`` minus one hour.
        """
        from sandbox.world.generator import WorldGenerator

        world = cls()
        WorldGenerator(
            world,
            seed=seed,
            workspaces=workspaces,
            projects=projects,
            repos=repos,
            prs_per_repo=prs_per_repo,
            commits_per_repo=commits_per_repo,
            users=users,
            now=now,
        ).run()
        return world

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

    def add_account(
        self, *, nickname: str, display_name: str, email: str, kind: str = "user"
    ) -> Account:
        with self.lock:
            account = Account(
                uuid=self.new_uuid(),
                account_id=f"712020:{uuid_module.uuid4()}",
                nickname=nickname,
                display_name=display_name,
                email=email,
                created_on=self.tick(),
                kind=kind,
            )
            self.accounts[account.uuid] = account
            return account

    # -- repository mutations ------------------------------------------------------------------

    def repository_create(
        self,
        *,
        workspace: str,
        project: str | None,
        name: str,
        slug: str | None = None,
        description: str = "",
        language: str = "",
        is_private: bool = True,
        files: dict[str, str | bytes] | None = None,
        mainbranch: str = "main",
        actor: str | None = None,
    ) -> Repository:
        """A new repository; empty (``mainbranch`` null) unless ``files`` make a first commit.

        ``project`` None: a repository in no project (Cloud shows it without ``project``; Data
        Center, where every repository has one, does not serve it). A user's personal project
        is ``~NICKNAME`` (see :meth:`personal_project_create`)."""
        with self.lock:
            ws = self.workspace(workspace)
            if project is not None and project not in ws.projects:
                raise NotFound(f"Project {project} not found in {workspace}")
            slug = slug or slugify(name)
            if slug in ws.repositories:
                raise Conflict(f"Repository {workspace}/{slug} already exists")
            now = self.tick()
            repo = Repository(
                uuid=self.new_uuid(),
                slug=slug,
                name=name,
                workspace=ws.slug,
                project_key=project,
                description=description,
                language=language,
                is_private=is_private,
                created_on=now,
                updated_on=now,
                size=0,
                mainbranch=None,
            )
            ws.repositories[slug] = repo
            actor = actor or self.default_actor(ws.slug)
            self._emit("repository.created", repo, actor)
            if files:
                self.commit_create(
                    workspace=ws.slug,
                    slug=slug,
                    branch=mainbranch,
                    files=files,
                    message="Initial commit",
                    actor=actor,
                )
            return repo

    def repository_update(
        self, *, workspace: str, slug: str, actor: str | None = None, **changes: Any
    ) -> Repository:
        """Edit repository fields; renaming changes the slug too, as Bitbucket does."""
        editable = {
            "name",
            "slug",
            "description",
            "language",
            "is_private",
            "website",
            "project_key",
            "fork_policy",
            "has_issues",
            "has_wiki",
        }
        unknown = set(changes) - editable
        if unknown:
            raise Invalid(f"Not editable: {', '.join(sorted(unknown))}")
        with self.lock:
            ws = self.workspace(workspace)
            repo = self.repository(workspace, slug)
            if "name" in changes and "slug" not in changes:
                changes["slug"] = slugify(changes["name"])
            if "project_key" in changes and changes["project_key"] not in ws.projects:
                raise NotFound(f"Project {changes['project_key']} not found in {workspace}")
            new_slug = changes.get("slug", repo.slug)
            if new_slug != repo.slug and new_slug in ws.repositories:
                raise Conflict(f"Repository {workspace}/{new_slug} already exists")
            diff = {}
            for key, value in changes.items():
                old = getattr(repo, key)
                if old != value:
                    diff[key] = {"old": old, "new": value}
                    setattr(repo, key, value)
            if "slug" in diff:
                del ws.repositories[diff["slug"]["old"]]
                ws.repositories[repo.slug] = repo
                diff["full_name"] = {
                    "old": f"{ws.slug}/{diff['slug']['old']}",
                    "new": repo.full_name,
                }
            if diff:
                repo.updated_on = self.tick()
                self._emit(
                    "repository.updated", repo, actor or self.default_actor(ws.slug), changes=diff
                )
            return repo

    def repository_rename(
        self, *, workspace: str, slug: str, name: str, actor: str | None = None
    ) -> Repository:
        return self.repository_update(workspace=workspace, slug=slug, name=name, actor=actor)

    def repository_delete(self, *, workspace: str, slug: str, actor: str | None = None) -> None:
        with self.lock:
            ws = self.workspace(workspace)
            repo = self.repository(workspace, slug)
            del ws.repositories[repo.slug]
            self.credentials.forget_repository(repo.uuid)
            for key in [key for key in self.read_traps if key[0] == repo.uuid]:
                del self.read_traps[key]
            self._emit("repository.deleted", repo, actor or self.default_actor(ws.slug))

    def repository_set_visibility(
        self, *, workspace: str, slug: str, private: bool, actor: str | None = None
    ) -> Repository:
        """Make a repository private or public (Cloud's ``is_private``, Data Center's
        ``public``), announced as a repository update."""
        return self.repository_update(
            workspace=workspace, slug=slug, is_private=bool(private), actor=actor
        )

    # -- personal projects -----------------------------------------------------------------

    def personal_project_create(self, *, workspace: str, user: str) -> Project:
        """The personal project (``~NICKNAME``) of a user — by uuid, nickname or e-mail — in a
        workspace; the user becomes a member. The existing one when there is one."""
        with self.lock:
            ws = self.workspace(workspace)
            account = self.find_account(user)
            key = personal_project_key(account.nickname)
            if key in ws.projects:
                return ws.projects[key]
            now = self.tick()
            project = Project(
                uuid=self.new_uuid(),
                key=key,
                name=account.display_name,
                description="",
                is_private=True,
                created_on=now,
                updated_on=now,
                owner=account.uuid,
            )
            ws.projects[key] = project
            if account.uuid not in ws.members:
                ws.members.append(account.uuid)
            return project

    def find_account(self, value: str) -> Account:
        """An account by uuid, nickname or e-mail."""
        for account in self.accounts.values():
            if value in (account.uuid, account.nickname, account.email):
                return account
        raise NotFound(f"No account {value!r}")

    # -- read traps: a repository that changes under a reader ---------------------------------

    def _trap_repository(self, repo: "Repository | str") -> Repository:
        if isinstance(repo, Repository):
            return repo
        workspace, _, slug = repo.partition("/")
        return self.repository(workspace, slug)

    @staticmethod
    def _trap_kind(kind: str) -> str:
        if kind not in READ_KINDS:
            raise Invalid(f"kind must be one of {', '.join(READ_KINDS)}, not {kind!r}")
        return kind

    def delete_on_read(self, repo: "Repository | str", *, kind: str = "pull_requests") -> None:
        """The repository (or ``"workspace/slug"``) is deleted on the first read of its
        ``kind`` — after a listing named it, before its pull requests (commits, files) are
        read — and that read answers 404, as Bitbucket does for a deleted repository."""
        with self.lock:
            target = self._trap_repository(repo)
            self.read_traps[(target.uuid, self._trap_kind(kind))] = ReadTrap(kind, "delete", 404)

    def forbid(
        self, repo: "Repository | str", *, kind: str = "pull_requests", status: int = 403
    ) -> None:
        """Every read of the repository's ``kind`` answers ``status`` with the server's own
        error body (a permission that covers the repository but not its pull requests), until
        :meth:`read_traps_clear`."""
        if not 400 <= int(status) <= 599:
            raise Invalid(f"status must be an HTTP error status, not {status}")
        with self.lock:
            target = self._trap_repository(repo)
            trap = ReadTrap(self._trap_kind(kind), "deny", int(status))
            self.read_traps[(target.uuid, kind)] = trap

    def read_traps_clear(self, repo: "Repository | str | None" = None) -> int:
        """Remove the traps of one repository (or all); returns how many."""
        with self.lock:
            uuid = None if repo is None else self._trap_repository(repo).uuid
            keys = [key for key in self.read_traps if uuid is None or key[0] == uuid]
            for key in keys:
                del self.read_traps[key]
            return len(keys)

    def read_check(self, repo: Repository, kind: str) -> None:
        """Called by the servers, under the lock, before they read ``kind`` of ``repo``: springs
        its trap (:class:`RepositoryGone` after deleting it, or :class:`Denied`)."""
        trap = self.read_traps.get((repo.uuid, kind))
        if trap is None:
            return
        if trap.action == "delete":
            self.repository_delete(workspace=repo.workspace, slug=repo.slug)
            raise RepositoryGone(f"Repository {repo.full_name} not found")
        raise Denied(
            f"Reading the {kind.replace('_', ' ')} of {repo.full_name} is not permitted",
            status=trap.status,
            kind=kind,
        )

    def edge_cases(
        self, *, workspace: str | None = None, user: str | None = None, projectless: bool = False
    ) -> dict[str, Repository]:
        """Repositories real instances have and generated worlds do not, by role: ``personal``
        and ``personal_empty`` (in ``user``'s — default: the first member's — personal project
        ``~NICKNAME``), ``unicode`` ("Café Über Service"), ``spaces`` ("data pipeline (v2)"),
        ``dots`` ("config.v1.2"), ``long`` (a 90-character name) and, when ``projectless``
        (Cloud only), ``projectless`` (no project). All but ``personal_empty`` have a first
        commit with a README."""
        with self.lock:
            ws = self.workspace(workspace or next(iter(self.workspaces)))
            owner = user or (ws.members[0] if ws.members else None)
            if owner is None:
                raise Invalid(f"Workspace {ws.slug} has no member to own a personal project")
            personal = self.personal_project_create(workspace=ws.slug, user=owner).key
            project = next(
                (key for key, p in sorted(ws.projects.items()) if not p.personal), personal
            )
            readme = {"README.md": "# Edge case\n"}
            long_name = "A very long repository name " + "that keeps going " * 4
            plan = [
                ("personal", personal, "Personal Notes", readme),
                ("personal_empty", personal, "scratch", None),
                ("unicode", project, "Café Über Service", readme),
                ("spaces", project, "data pipeline (v2)", readme),
                ("dots", project, "config.v1.2", readme),
                ("long", project, long_name.strip()[:90], readme),
            ]
            if projectless:
                plan.append(("projectless", None, "Loose Scripts", readme))
            return {
                role: self.repository_create(workspace=ws.slug, project=key, name=name, files=files)
                for role, key, name, files in plan
            }

    # -- commits -------------------------------------------------------------------------------

    def commit_create(
        self,
        *,
        workspace: str,
        slug: str,
        files: dict[str, str | bytes | None] | None = None,
        branch: str | None = None,
        message: str = "Edited online with Bitbucket",
        author: str | None = None,
        parents: list[str] | None = None,
        actor: str | None = None,
    ) -> Commit:
        """One commit on ``branch`` (default: the main branch), as ``POST /src`` makes it.

        When the branch exists and ``parents`` is given, ``parents[0]`` must be its tip
        (otherwise :class:`Conflict`, Bitbucket's 409). A new branch starts from ``parents[0]`` or
        the main branch's tip; the first branch of an empty repository becomes its main branch.
        """
        with self.lock:
            repo = self.repository(workspace, slug)
            actor = actor or self.default_actor(repo.workspace)
            branch = branch or repo.mainbranch or "main"
            parents = [p for p in (parents or []) if p]
            resolved = []
            for parent in parents:
                commit = repo.resolve(parent)
                if commit is None:
                    raise NotFound(f"Commit {parent} not found")
                resolved.append(commit.hash)
            tip = repo.branches.get(branch)
            if tip is not None:
                if resolved and resolved[0] != tip:
                    raise Conflict(
                        f"The parent {parents[0]} is not the tip of branch {branch} ({tip[:12]})"
                    )
                resolved = resolved or [tip]
            elif not resolved and repo.mainbranch:
                resolved = [repo.branches[repo.mainbranch]]
            if author is None:
                account = self.account(actor)
                author = account.raw_author if account else "Sandbox <sandbox@example.com>"
            changes = {
                path.lstrip("/"): (content.encode() if isinstance(content, str) else content)
                for path, content in (files or {}).items()
            }
            commit = Commit(
                hash=self._new_hash(repo.uuid, branch, message),
                date=self.tick(),
                message=message,
                author=author,
                parents=resolved,
                changes=changes,
            )
            self._advance(repo, branch, [commit], actor=actor)
            return commit

    def commits_push(
        self,
        *,
        workspace: str,
        slug: str,
        branch: str | None = None,
        count: int = 1,
        message: str | None = None,
        files: dict[str, str | bytes | None] | None = None,
        author: str | None = None,
        actor: str | None = None,
    ) -> list[Commit]:
        """``count`` new commits on a branch in one push (one ``push`` event)."""
        if count < 1:
            raise Invalid("count must be at least 1")
        with self.lock:
            repo = self.repository(workspace, slug)
            actor = actor or self.default_actor(repo.workspace)
            branch = branch or repo.mainbranch or "main"
            tip = repo.branches.get(branch)
            if tip is None and repo.mainbranch:
                tip = repo.branches[repo.mainbranch]
            if author is None:
                account = self.account(actor)
                author = account.raw_author if account else "Sandbox <sandbox@example.com>"
            commits = []
            for index in range(count):
                text = message or f"Change {index + 1} of {count}"
                changes = {}
                if index == count - 1 and files:
                    changes = {
                        p.lstrip("/"): (c.encode() if isinstance(c, str) else c)
                        for p, c in files.items()
                    }
                commit = Commit(
                    hash=self._new_hash(repo.uuid, branch, text),
                    date=self.tick(),
                    message=text,
                    author=author,
                    parents=[tip] if tip else [],
                    changes=changes,
                )
                repo.commits[commit.hash] = commit
                commits.append(commit)
                tip = commit.hash
            self._advance(repo, branch, commits, actor=actor)
            return commits

    def file_write(
        self,
        *,
        workspace: str,
        slug: str,
        path: str,
        content: str | bytes,
        branch: str | None = None,
        message: str | None = None,
        actor: str | None = None,
    ) -> Commit:
        return self.commit_create(
            workspace=workspace,
            slug=slug,
            files={path: content},
            branch=branch,
            message=message or f"Update {path.lstrip('/')}",
            actor=actor,
        )

    def branch_delete(
        self, *, workspace: str, slug: str, branch: str, actor: str | None = None
    ) -> None:
        with self.lock:
            repo = self.repository(workspace, slug)
            if branch not in repo.branches:
                raise NotFound(f"Branch {branch} not found")
            if branch == repo.mainbranch:
                raise Invalid("The main branch cannot be deleted")
            old = repo.branches.pop(branch)
            repo.updated_on = self.tick()
            self._emit(
                "push",
                repo,
                actor or self.default_actor(repo.workspace),
                changes=[self._change(repo, branch, old, None, [])],
            )

    def _advance(self, repo: Repository, branch: str, commits: list[Commit], *, actor) -> None:
        """Move a branch to the last of ``commits`` (already parented), as one push."""
        old = repo.branches.get(branch)
        for commit in commits:
            repo.commits[commit.hash] = commit
        new = commits[-1].hash
        repo.branches[branch] = new
        if repo.mainbranch is None:
            repo.mainbranch = branch
        repo.size += sum(len(c or b"") for commit in commits for c in commit.changes.values())
        repo.updated_on = self.tick()
        forced = old is not None and old not in {c.hash for c in repo.history(new)}
        self._emit(
            "push",
            repo,
            actor,
            changes=[self._change(repo, branch, old, new, list(reversed(commits)), forced)],
        )
        for pr in repo.pull_requests.values():
            if pr.state == "OPEN" and pr.source_branch == branch:
                pr.source_commit = new
                pr.updated_on = self.tick()
                self._emit("pullrequest.updated", repo, actor, pullrequest=pr)

    @staticmethod
    def _change(repo, branch, old, new, commits, forced=False) -> dict:
        return {
            "branch": branch,
            "old": old,
            "new": new,
            "created": old is None,
            "closed": new is None,
            "forced": forced,
            "commits": commits,  # newest first
        }

    # -- pull requests -------------------------------------------------------------------------

    def pullrequest_open(
        self,
        *,
        workspace: str,
        slug: str,
        title: str,
        source: str,
        destination: str | None = None,
        description: str = "",
        author: str | None = None,
        reviewers: Iterable[str] = (),
        close_source_branch: bool = False,
    ) -> PullRequest:
        """Open a pull request; a missing source branch is created with one commit."""
        with self.lock:
            repo = self.repository(workspace, slug)
            destination = destination or repo.mainbranch
            if destination is None or destination not in repo.branches:
                raise Invalid(f"Destination branch {destination} does not exist")
            author = author or self.default_actor(repo.workspace)
            if source not in repo.branches:
                self.commit_create(
                    workspace=workspace,
                    slug=repo.slug,
                    branch=source,
                    parents=[repo.branches[destination]],
                    files={f"changes/{slugify(source)}.md": f"# {title}\n"},
                    message=title,
                    actor=author,
                )
            now = self.tick()
            pr = PullRequest(
                id=max(repo.pull_requests, default=0) + 1,
                title=title,
                description=description,
                state="OPEN",
                author=author,
                source_branch=source,
                source_commit=repo.branches[source],
                destination_branch=destination,
                destination_commit=repo.branches[destination],
                created_on=now,
                updated_on=now,
                close_source_branch=close_source_branch,
                reviewers=list(reviewers),
            )
            repo.pull_requests[pr.id] = pr
            self._emit("pullrequest.created", repo, author, pullrequest=pr)
            return pr

    def pullrequest_update(
        self,
        *,
        workspace: str,
        slug: str,
        pr_id: int,
        title: str | None = None,
        description: str | None = None,
        actor: str | None = None,
    ) -> PullRequest:
        with self.lock:
            repo = self.repository(workspace, slug)
            pr = self.pull_request(repo, pr_id)
            if title is not None:
                pr.title = title
            if description is not None:
                pr.description = description
            pr.updated_on = self.tick()
            actor = actor or pr.author
            self._emit("pullrequest.updated", repo, actor, pullrequest=pr)
            return pr

    def _open_pr(self, workspace: str, slug: str, pr_id: int) -> tuple[Repository, PullRequest]:
        repo = self.repository(workspace, slug)
        pr = self.pull_request(repo, pr_id)
        if pr.state != "OPEN":
            raise Conflict(f"Pull request {pr_id} is {pr.state}, not OPEN")
        return repo, pr

    def pullrequest_merge(
        self,
        *,
        workspace: str,
        slug: str,
        pr_id: int,
        message: str | None = None,
        close_source_branch: bool | None = None,
        actor: str | None = None,
    ) -> PullRequest:
        """A merge commit on the destination (a push), the source branch closed if asked."""
        with self.lock:
            repo, pr = self._open_pr(workspace, slug, pr_id)
            actor = actor or self.default_actor(repo.workspace)
            account = self.account(actor)
            text = message or f"Merged in {pr.source_branch} (pull request #{pr.id})"
            merge = Commit(
                hash=self._new_hash(repo.uuid, "merge", str(pr.id)),
                date=self.tick(),
                message=text,
                author=account.raw_author if account else "Sandbox <sandbox@example.com>",
                parents=[repo.branches[pr.destination_branch], pr.source_commit],
            )
            self._advance(repo, pr.destination_branch, [merge], actor=actor)
            if close_source_branch is not None:
                pr.close_source_branch = close_source_branch
            pr.state = "MERGED"
            pr.merge_commit = merge.hash
            pr.closed_by = actor
            pr.updated_on = self.tick()
            self._emit("pullrequest.merged", repo, actor, pullrequest=pr)
            if pr.close_source_branch and pr.source_branch in repo.branches:
                self.branch_delete(
                    workspace=repo.workspace, slug=repo.slug, branch=pr.source_branch, actor=actor
                )
            return pr

    def pullrequest_decline(
        self,
        *,
        workspace: str,
        slug: str,
        pr_id: int,
        reason: str = "",
        actor: str | None = None,
    ) -> PullRequest:
        with self.lock:
            repo, pr = self._open_pr(workspace, slug, pr_id)
            actor = actor or self.default_actor(repo.workspace)
            pr.state = "DECLINED"
            pr.reason = reason
            pr.closed_by = actor
            pr.updated_on = self.tick()
            self._emit("pullrequest.declined", repo, actor, pullrequest=pr)
            return pr

    def pullrequest_approve(
        self, *, workspace: str, slug: str, pr_id: int, user: str | None = None, approve=True
    ) -> PullRequest:
        with self.lock:
            repo = self.repository(workspace, slug)
            pr = self.pull_request(repo, pr_id)
            user = user or self.default_actor(repo.workspace)
            if approve and user not in pr.approvals:
                pr.approvals.append(user)
            elif not approve and user in pr.approvals:
                pr.approvals.remove(user)
            kind = "pullrequest.approved" if approve else "pullrequest.unapproved"
            self._emit(kind, repo, user, pullrequest=pr, user=user, date=self.tick())
            return pr

    def pullrequest_comment(
        self, *, workspace: str, slug: str, pr_id: int, content: str, user: str | None = None
    ) -> PullRequest:
        with self.lock:
            repo = self.repository(workspace, slug)
            pr = self.pull_request(repo, pr_id)
            user = user or self.default_actor(repo.workspace)
            pr.comment_count += 1
            pr.updated_on = self.tick()
            comment = {"id": pr.comment_count, "content": content, "user": user}
            self._emit("pullrequest.comment_created", repo, user, pullrequest=pr, comment=comment)
            return pr

    # -- JSON ----------------------------------------------------------------------------------

    def dump(self) -> dict:
        with self.lock:
            return {
                "version": 1,
                "accounts": [_account_json(a) for a in self.accounts.values()],
                "workspaces": [_workspace_json(ws) for ws in self.workspaces.values()],
                "credentials": self.credentials.dump(),
            }

    def dump_to(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.dump(), indent=1))

    @classmethod
    def load(cls, data: dict) -> "World":
        world = cls()
        for item in data.get("accounts", []):
            account = Account(
                **{**item, "created_on": parse_time(item["created_on"])}  # type: ignore[arg-type]
            )
            world.accounts[account.uuid] = account
        for item in data.get("workspaces", []):
            ws = _workspace_from_json(item)
            world.workspaces[ws.slug] = ws
        world.credentials.load(data.get("credentials") or {})
        for repo in world.iter_repositories():
            world.not_before(repo.updated_on)
            for item in [*repo.pull_requests.values(), *repo.commits.values()]:
                world.not_before(getattr(item, "updated_on", None) or item.date)
        return world

    @classmethod
    def load_from(cls, path: str | Path) -> "World":
        return cls.load(json.loads(Path(path).read_text()))

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


# -- JSON helpers ------------------------------------------------------------------------------


def _content_json(content: bytes | None) -> Any:
    if content is None:
        return None
    try:
        return content.decode()
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(content).decode()}


def _content_from_json(value: Any) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, dict):
        return base64.b64decode(value["base64"])
    return value.encode()


def _account_json(account: Account) -> dict:
    return {**account.__dict__, "created_on": format_time(account.created_on)}


def _workspace_json(ws: Workspace) -> dict:
    return {
        "uuid": ws.uuid,
        "slug": ws.slug,
        "name": ws.name,
        "is_private": ws.is_private,
        "created_on": format_time(ws.created_on),
        "members": ws.members,
        "projects": [
            {
                **p.__dict__,
                "created_on": format_time(p.created_on),
                "updated_on": format_time(p.updated_on),
            }
            for p in ws.projects.values()
        ],
        "repositories": [_repository_json(r) for r in ws.repositories.values()],
    }


def _repository_json(repo: Repository) -> dict:
    data = {
        key: value
        for key, value in repo.__dict__.items()
        if key not in ("commits", "pull_requests", "created_on", "updated_on")
    }
    data["created_on"] = format_time(repo.created_on)
    data["updated_on"] = format_time(repo.updated_on)
    data["commits"] = [
        {
            "hash": c.hash,
            "date": format_time(c.date),
            "message": c.message,
            "author": c.author,
            "parents": c.parents,
            "changes": {path: _content_json(v) for path, v in c.changes.items()},
        }
        for c in repo.commits.values()
    ]
    data["pull_requests"] = [
        {
            **pr.__dict__,
            "created_on": format_time(pr.created_on),
            "updated_on": format_time(pr.updated_on),
        }
        for pr in repo.pull_requests.values()
    ]
    return data


def _workspace_from_json(item: dict) -> Workspace:
    ws = Workspace(
        uuid=item["uuid"],
        slug=item["slug"],
        name=item["name"],
        is_private=item.get("is_private", True),
        created_on=parse_time(item["created_on"]),
        members=list(item.get("members", [])),
    )
    for p in item.get("projects", []):
        project = Project(
            **{
                **p,
                "created_on": parse_time(p["created_on"]),
                "updated_on": parse_time(p["updated_on"]),
            }
        )
        ws.projects[project.key] = project
    for r in item.get("repositories", []):
        commits = {
            c["hash"]: Commit(
                hash=c["hash"],
                date=parse_time(c["date"]),
                message=c["message"],
                author=c["author"],
                parents=list(c["parents"]),
                changes={p: _content_from_json(v) for p, v in c.get("changes", {}).items()},
            )
            for c in r.get("commits", [])
        }
        prs = {
            pr["id"]: PullRequest(
                **{
                    **pr,
                    "created_on": parse_time(pr["created_on"]),
                    "updated_on": parse_time(pr["updated_on"]),
                }
            )
            for pr in r.get("pull_requests", [])
        }
        fields = {k: v for k, v in r.items() if k not in ("commits", "pull_requests")}
        fields["created_on"] = parse_time(fields["created_on"])
        fields["updated_on"] = parse_time(fields["updated_on"])
        repo = Repository(**fields, commits=commits, pull_requests=prs)
        ws.repositories[repo.slug] = repo
    return ws
