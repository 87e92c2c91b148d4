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

from datetime import datetime

from sandbox.credentials import Credentials
from sandbox.world.generator import WorldGenerator
from sandbox.world.mutations import WorldMutations
from sandbox.world.persistence import WorldPersistence
from sandbox.world.store import (
    FORK_POLICIES,
    PR_STATES,
    READ_KINDS,
    Account,
    Commit,
    Conflict,
    Denied,
    Invalid,
    Listener,
    NotFound,
    Project,
    PullRequest,
    ReadTrap,
    Repository,
    RepositoryGone,
    SandboxClock,
    Workspace,
    WorldError,
    WorldEvent,
    WorldStore,
    format_time,
    parse_time,
    personal_project_key,
    slugify,
    utc_now,
)


class World(WorldPersistence, WorldMutations):
    """The store, its mutations and its persistence, plus who may call the servers over it
    (``credentials``)."""

    def __init__(self, *, clock: SandboxClock | None = None):
        super().__init__(clock=clock)
        self.credentials = Credentials(self)

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


__all__ = [
    "FORK_POLICIES",
    "PR_STATES",
    "READ_KINDS",
    "Account",
    "Commit",
    "Conflict",
    "Denied",
    "Invalid",
    "Listener",
    "NotFound",
    "Project",
    "PullRequest",
    "ReadTrap",
    "Repository",
    "RepositoryGone",
    "SandboxClock",
    "Workspace",
    "World",
    "WorldError",
    "WorldEvent",
    "WorldStore",
    "format_time",
    "parse_time",
    "personal_project_key",
    "slugify",
    "utc_now",
]
