"""What both sandboxes share for write-back: the conflict knobs and the someone-else commit.

A product that writes to Bitbucket has to survive a branch that moves under it. The knobs make
that happen on demand: ``conflicts`` says how many of the next writes of each kind are answered
with the server's own conflict (a Cloud ``POST /src``: 409; a Data Center push: the branch is
moved by another author first, so git rejects the update; a Data Center pull-request creation:
409), and :func:`upstream_change` commits a change to one file by someone other than the caller,
so the product can detect it instead of overwriting it. Counts are read back through the control
API (``GET /_sandbox/write-faults``), with the force pushes the Data Center sandbox refused.
"""

import threading
from collections import Counter
from typing import Any

from sandbox.routing import Request, Response, Route
from sandbox.world import Commit, Invalid, Repository, World

WRITE_KINDS = ("commit", "push", "pull_request")
CONCURRENT_PATH = ".sandbox/concurrent-change.txt"  # what the conflict knob's commits touch


class WriteFaults:
    """Armed conflict counts per kind of write, and what was answered (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.pending: Counter[str] = Counter()
        self.answered: Counter[str] = Counter()
        self.force_pushes_refused = 0
        self.pushes_accepted = 0

    def configure(self, **counts: Any) -> dict:
        unknown = set(counts) - set(WRITE_KINDS)
        if unknown:
            known = ", ".join(WRITE_KINDS)
            raise ValueError(f"Unknown write kinds: {', '.join(sorted(unknown))} (known: {known})")
        with self._lock:
            for kind, count in counts.items():
                count = int(count)
                if count < 0:
                    raise ValueError(f"{kind}: a count cannot be negative")
                self.pending[kind] = count
        return self.as_json()

    def take(self, kind: str) -> bool:
        """True (and one fewer pending) when this write of ``kind`` must meet a conflict."""
        with self._lock:
            if self.pending[kind] <= 0:
                return False
            self.pending[kind] -= 1
            self.answered[kind] += 1
            return True

    def count_force_push(self) -> None:
        with self._lock:
            self.force_pushes_refused += 1

    def count_push(self) -> None:
        with self._lock:
            self.pushes_accepted += 1

    def reset(self) -> None:
        with self._lock:
            self.pending.clear()
            self.answered.clear()
            self.force_pushes_refused = 0
            self.pushes_accepted = 0

    def as_json(self) -> dict:
        with self._lock:
            return {
                "pending": {kind: self.pending[kind] for kind in WRITE_KINDS},
                "answered": {kind: self.answered[kind] for kind in WRITE_KINDS},
                "force_pushes_refused": self.force_pushes_refused,
                "pushes_accepted": self.pushes_accepted,
            }


def someone_else(world: World, repo: Repository, caller: str | None, wanted: str | None) -> str:
    """The account (uuid) of "someone else": ``wanted`` (uuid, nickname or e-mail) when given,
    else a member of the repository's workspace who is not ``caller``."""
    if wanted:
        return world.find_account(wanted).uuid
    members = world.workspaces[repo.workspace].members
    others = [uuid for uuid in members if uuid != caller]
    if not others:
        raise Invalid(f"Workspace {repo.workspace} has no member other than the caller")
    return others[-1]


def concurrent_commit(world: World, repo: Repository, branch: str, caller: str | None) -> Commit:
    """A commit by someone else on ``branch`` touching only :data:`CONCURRENT_PATH`, as when a
    colleague pushes between a client's read of the tip and its write (call under the lock)."""
    author = someone_else(world, repo, caller, None)
    answered = sum(1 for c in repo.commits.values() if CONCURRENT_PATH in c.changes)
    return world.commit_create(
        workspace=repo.workspace,
        slug=repo.slug,
        branch=branch,
        files={CONCURRENT_PATH: f"concurrent change {answered + 1}\n"},
        message=f"Concurrent change {answered + 1}",
        actor=author,
    )


def upstream_change(
    world: World,
    *,
    workspace: str,
    slug: str,
    path: str,
    branch: str | None = None,
    content: str | None = None,
    author: str | None = None,
    message: str | None = None,
) -> Commit:
    """Someone else changes ``path`` on ``branch`` (default: the main branch)."""
    with world.lock:
        repo = world.repository(workspace, slug)
        actor = someone_else(world, repo, world.default_actor(repo.workspace), author)
        account = world.account(actor)
        name = account.display_name if account else "someone else"
        return world.commit_create(
            workspace=repo.workspace,
            slug=repo.slug,
            branch=branch,
            files={path: content if content is not None else f"# changed upstream by {name}\n"},
            message=message or f"Change {path.lstrip('/')} upstream",
            actor=actor,
        )


def write_control_routes(api: Any, prefix: str, on_upstream=None) -> list[Route]:
    """``/_sandbox/write-faults`` (GET, PUT ``{"commit": n, "push": n, "pull_request": n}``,
    DELETE) and ``POST /_sandbox/repositories/{workspace}/{slug}/upstream-change`` ``{path,
    branch?, content?, author?, message?}``. ``on_upstream(repo)`` runs after the change (the
    Data Center sandbox gives the commit its git id there)."""
    faults: WriteFaults = api.writes

    def faults_get(request: Request) -> Response:
        return Response.json(faults.as_json())

    def faults_put(request: Request) -> Response:
        return Response.json(faults.configure(**request.json()))

    def faults_delete(request: Request) -> Response:
        faults.reset()
        return Response(status=204, content_type=None)

    def upstream(request: Request) -> Response:
        body = request.json()
        with api.world.lock:
            commit = upstream_change(
                api.world,
                workspace=request.params["workspace"],
                slug=request.params["slug"],
                path=body["path"],
                branch=body.get("branch"),
                content=body.get("content"),
                author=body.get("author"),
                message=body.get("message"),
            )
            if on_upstream is not None:
                repo = api.world.repository(request.params["workspace"], request.params["slug"])
                commit = on_upstream(repo, commit)
            document = {"hash": commit.hash, "author": commit.author, "message": commit.message}
        return Response.json(document, status=201)

    table = [
        ("GET", "/write-faults", faults_get),
        ("PUT", "/write-faults", faults_put),
        ("DELETE", "/write-faults", faults_delete),
        ("POST", "/repositories/{workspace}/{slug}/upstream-change", upstream),
    ]
    return [Route(method, prefix + path, handler, auth=False) for method, path, handler in table]
