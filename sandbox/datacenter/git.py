"""Git smart HTTP for the Data Center sandbox (``/scm/{project}/{repo}.git``), served by
dulwich's server side over the sandbox's own HTTPS server.

Each world repository gets a bare git repository in a temporary folder, built on its first git
access from the world's commits. From then on the two agree: the world's commits of that
repository carry their real git ids (REST answers the ids git shows), world changes made
elsewhere (the control API, a merge through REST) are written into git before each git request,
and an accepted push moves the world's branch, so REST lists the pushed commits and serves their
files. Authentication is the REST API's (Basic ``username:token`` or Bearer); pushing needs
REPO_WRITE. A non-fast-forward update (a force push) is refused and counted, never applied.
"""

import gzip
import logging
import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from io import BytesIO
from typing import TYPE_CHECKING

from dulwich.diff_tree import tree_changes
from dulwich.graph import can_fast_forward
from dulwich.objects import Blob, Tree
from dulwich.objects import Commit as GitCommit
from dulwich.protocol import ReceivableProtocol
from dulwich.repo import Repo
from dulwich.server import Backend, ReceivePackHandler, UploadPackHandler

from sandbox.routing import Request, Response, Route
from sandbox.world import Commit, Repository
from sandbox.writes import concurrent_commit

if TYPE_CHECKING:
    from sandbox.datacenter.api import DataCenterApi
    from sandbox.datacenter.credentials import DcPrincipal

logger = logging.getLogger(__name__)

ZERO = b"0" * 40
HEADS = b"refs/heads/"
WRITE_PERMISSIONS = frozenset({"REPO_WRITE", "REPO_ADMIN", "PROJECT_WRITE", "PROJECT_ADMIN"})
SERVICES = ("git-upload-pack", "git-receive-pack")
FORCE_PUSH_REFUSED = b"non-fast-forward (force pushes are not permitted)"
STALE_REF = b"failed to update ref: the branch moved (fetch first)"


def can_write(principal: "DcPrincipal") -> bool:
    return principal.permission in WRITE_PERMISSIONS


def _tree(repo: Repo, files: dict[str, bytes]) -> bytes:
    """The id of the tree holding ``files`` (paths → contents), subtrees written first."""
    tree = Tree()
    folders: dict[str, dict[str, bytes]] = {}
    for path, content in files.items():
        name, _, rest = path.partition("/")
        if rest:
            folders.setdefault(name, {})[rest] = content
        else:
            blob = Blob.from_string(content)
            repo.object_store.add_object(blob)
            tree.add(name.encode(), 0o100644, blob.id)
    for name, children in folders.items():
        tree.add(name.encode(), 0o040000, _tree(repo, children))
    repo.object_store.add_object(tree)
    return tree.id


def _ref(git: Repo, name: bytes) -> bytes:
    """A ref's target, or the zero id when it does not exist."""
    return git.refs[name] if name in git.refs else ZERO


def _git_message(message: str) -> bytes:
    data = message.encode()
    return data if data.endswith(b"\n") else data + b"\n"


class _OneRepoBackend(Backend):
    def __init__(self, repo: Repo):
        self.repo = repo

    def open_repository(self, path):
        return self.repo


class GitMirror:
    """One world repository's bare git repository (call everything under the world lock)."""

    def __init__(self, path: str):
        self.git = Repo.init_bare(path, mkdir=True)
        self.known: set[str] = set()  # world hashes that are git ids in ``git``

    def sync(self, world, repo: Repository) -> None:
        """Write the world's new commits into git (giving them their git ids in the world) and
        point git's branches at the world's."""
        pending = [c for c in repo.commits.values() if c.hash not in self.known]
        if pending:
            renamed: dict[str, str] = {}
            for commit in self._parents_first(repo, pending):
                renamed[commit.hash] = self._write(repo, commit, renamed)
            self._rename(repo, renamed)
        wanted = {HEADS + name.encode(): sha.encode() for name, sha in repo.branches.items()}
        for ref in list(self.git.refs.keys(base=HEADS)):
            if HEADS + ref not in wanted:
                del self.git.refs[HEADS + ref]
        for ref, sha in wanted.items():
            if _ref(self.git, ref) != sha:
                self.git.refs[ref] = sha
        if repo.mainbranch:
            self.git.refs.set_symbolic_ref(b"HEAD", HEADS + repo.mainbranch.encode())

    @staticmethod
    def _parents_first(repo: Repository, pending: list[Commit]) -> list[Commit]:
        wanted = {c.hash for c in pending}
        ordered: list[Commit] = []
        done: set[str] = set()
        for start in sorted(pending, key=lambda c: (c.date, c.hash)):
            stack = [(start, False)]
            while stack:
                commit, expanded = stack.pop()
                if commit.hash in done:
                    continue
                if expanded:
                    done.add(commit.hash)
                    ordered.append(commit)
                    continue
                stack.append((commit, True))
                for parent in commit.parents:
                    if parent in wanted and parent not in done:
                        stack.append((repo.commits[parent], False))
        return ordered

    def _write(self, repo: Repository, commit: Commit, renamed: dict[str, str]) -> str:
        git_commit = GitCommit()
        git_commit.tree = _tree(self.git, repo.tree(commit))
        git_commit.parents = [renamed.get(p, p).encode() for p in commit.parents]
        git_commit.author = git_commit.committer = commit.author.encode()
        git_commit.author_time = git_commit.commit_time = int(commit.date.timestamp())
        git_commit.author_timezone = git_commit.commit_timezone = 0
        git_commit.message = _git_message(commit.message)
        self.git.object_store.add_object(git_commit)
        return git_commit.id.decode()

    def _rename(self, repo: Repository, renamed: dict[str, str]) -> None:
        """The world's commits of ``repo`` take their git ids, everywhere they are named."""
        commits = {}
        for commit in repo.commits.values():
            commit.hash = renamed.get(commit.hash, commit.hash)
            commit.parents = [renamed.get(p, p) for p in commit.parents]
            commits[commit.hash] = commit
        repo.commits = commits
        repo.branches = {name: renamed.get(sha, sha) for name, sha in repo.branches.items()}
        for pr in repo.pull_requests.values():
            pr.source_commit = renamed.get(pr.source_commit, pr.source_commit)
            pr.destination_commit = renamed.get(pr.destination_commit, pr.destination_commit)
            if pr.merge_commit:
                pr.merge_commit = renamed.get(pr.merge_commit, pr.merge_commit)
        self.known.update(commits)

    def world_commits(self, repo: Repository, tip: bytes) -> list[Commit]:
        """The git commits reachable from ``tip`` that the world does not have, parents first,
        as world commits (their changes against their first parent)."""
        found: list[Commit] = []
        seen: set[bytes] = set()
        stack = [(tip, False)]
        while stack:
            sha, expanded = stack.pop()
            if sha in seen or sha.decode() in repo.commits:
                continue
            git_commit = self.git[sha]
            if expanded:
                seen.add(sha)
                commit = self._world_commit(git_commit)
                # Git times are whole seconds: keep a child after a parent made in the same
                # second, so newest-first listings show the pushed tip first.
                dates = [c.date for c in found if c.hash in commit.parents]
                dates += [repo.commits[p].date for p in commit.parents if p in repo.commits]
                if dates and commit.date <= max(dates):
                    commit.date = max(dates) + timedelta(microseconds=1)
                found.append(commit)
                continue
            stack.append((sha, True))
            stack.extend((parent, False) for parent in git_commit.parents)
        self.known.update(c.hash for c in found)
        return found

    def _world_commit(self, git_commit: GitCommit) -> Commit:
        parent_tree = self.git[git_commit.parents[0]].tree if git_commit.parents else None
        changes: dict[str, bytes | None] = {}
        for change in tree_changes(self.git.object_store, parent_tree, git_commit.tree):
            if change.new is None or change.new.path is None:
                changes[change.old.path.decode()] = None
                continue
            if change.old is not None and change.old.path not in (None, change.new.path):
                changes[change.old.path.decode()] = None
            changes[change.new.path.decode()] = self.git[change.new.sha].data
        return Commit(
            hash=git_commit.id.decode(),
            date=datetime.fromtimestamp(git_commit.author_time, UTC),
            message=git_commit.message.decode("utf-8", "replace").rstrip("\n"),
            author=git_commit.author.decode("utf-8", "replace"),
            parents=[p.decode() for p in git_commit.parents],
            changes=changes,
        )


class GitHosting:
    """The ``/scm`` routes of one Data Center sandbox and its repositories' git mirrors."""

    def __init__(self, api: "DataCenterApi"):
        self.api = api
        self.world = api.world
        self.root = tempfile.mkdtemp(prefix="lantern-sandbox-git-")
        self.mirrors: dict[str, GitMirror] = {}

    def routes(self) -> list[Route]:
        base = "/scm/{project_key}/{repo_git}"
        return [
            Route("GET", f"{base}/info/refs", self.info_refs),
            Route("POST", f"{base}/git-upload-pack", self.upload_pack),
            Route("POST", f"{base}/git-receive-pack", self.receive_pack),
        ]

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def mirror(self, repo: Repository) -> GitMirror:
        """The repository's git mirror, up to date with the world (under the world lock)."""
        mirror = self.mirrors.get(repo.uuid)
        if mirror is None:
            path = f"{self.root}/{len(self.mirrors) + 1}.git"
            mirror = self.mirrors[repo.uuid] = GitMirror(path)
        mirror.sync(self.world, repo)
        return mirror

    def synced(self, repo: Repository, commit: Commit) -> Commit:
        """``commit``, renamed to its git id when the repository already has a mirror (so the
        control API answers the id both REST and git show)."""
        if repo.uuid in self.mirrors:
            self.mirror(repo)  # renames the world's Commit objects in place
        return commit

    # -- requests ------------------------------------------------------------------------------

    def _repository(self, request: Request) -> Repository:
        name = request.params["repo_git"]
        request.params["repo_slug"] = name[:-4] if name.endswith(".git") else name
        return self.api._repository(request)

    @staticmethod
    def _refused(status: int, message: str) -> Response:
        return Response.text(message + "\n", status=status)

    @staticmethod
    def _body(request: Request) -> bytes:
        if request.headers.get("Content-Encoding", "").lower() == "gzip":
            return gzip.decompress(request.body)
        return request.body

    def info_refs(self, request: Request) -> Response:
        service = request.arg("service")
        if service not in SERVICES:
            return self._refused(403, "Only the smart HTTP protocol is served (service=...)")
        with self.world.lock:
            repo = self._repository(request)
            if service == "git-receive-pack" and not can_write(request.principal):
                return self._no_push(repo)
            mirror = self.mirror(repo)
            out = BytesIO()
            proto = ReceivableProtocol(BytesIO().read, out.write)
            proto.write_pkt_line(f"# service={service}\n".encode())
            proto.write_pkt_line(None)
            handler_class = UploadPackHandler if service == SERVICES[0] else ReceivePackHandler
            handler = handler_class(
                _OneRepoBackend(mirror.git), ["/"], proto, stateless_rpc=True, advertise_refs=True
            )
            handler.handle()
        return self._result(out, f"application/x-{service}-advertisement")

    @staticmethod
    def _result(out: BytesIO, content_type: str) -> Response:
        response = Response(body=out.getvalue(), document=None, content_type=content_type)
        response.headers["Cache-Control"] = "no-cache, max-age=0, must-revalidate"
        return response

    def _no_push(self, repo: Repository) -> Response:
        message = (
            f"You need REPO_WRITE permission on {repo.project_key}/{repo.slug} to push; "
            "this credential has read access only."
        )
        return self._refused(403, message)

    def upload_pack(self, request: Request) -> Response:
        with self.world.lock:
            mirror = self.mirror(self._repository(request))
            out = BytesIO()
            proto = ReceivableProtocol(BytesIO(self._body(request)).read, out.write)
            UploadPackHandler(
                _OneRepoBackend(mirror.git), ["/"], proto, stateless_rpc=True
            ).handle()
        return self._result(out, "application/x-git-upload-pack-result")

    def receive_pack(self, request: Request) -> Response:
        with self.world.lock:
            repo = self._repository(request)
            if not can_write(request.principal):
                return self._no_push(repo)
            mirror = self.mirror(repo)
            out = BytesIO()
            proto = ReceivableProtocol(BytesIO(self._body(request)).read, out.write)
            handler = _SandboxReceivePack(
                _OneRepoBackend(mirror.git), ["/"], proto, stateless_rpc=True
            )
            handler.hosting, handler.repo_record = self, repo
            handler.principal, handler.mirror = request.principal, mirror
            handler.handle()
        return self._result(out, "application/x-git-receive-pack-result")


class _SandboxReceivePack(ReceivePackHandler):
    """dulwich's receive-pack with Bitbucket's rules: branches only, no force pushes, the
    default branch kept, the conflict knob, and accepted updates written into the world."""

    hosting: GitHosting
    repo_record: Repository
    principal: "DcPrincipal"
    mirror: GitMirror

    def _on_update(self, ref_name, old_sha, new_sha) -> bytes | None:
        if not ref_name.startswith(HEADS):
            return b"only branches (refs/heads/...) can be pushed here"
        repo, world = self.repo_record, self.hosting.world
        writes = self.hosting.api.writes
        branch = ref_name[len(HEADS) :].decode()
        current = _ref(self.repo, ref_name)
        if new_sha == ZERO:
            if branch == repo.mainbranch:
                return b"the default branch cannot be deleted"
            return None if old_sha == current else STALE_REF
        if current != ZERO and writes.take("push"):
            concurrent_commit(world, repo, branch, self.principal.account)
            self.mirror.sync(world, repo)
            return STALE_REF
        if current == ZERO:
            return None if old_sha == ZERO else STALE_REF
        if not can_fast_forward(self.repo, current, new_sha):
            if old_sha == current:
                writes.count_force_push()
                logger.info(
                    "sandbox.git.force_push_refused",
                    extra={"repository": repo.full_name, "branch": branch},
                )
                return FORCE_PUSH_REFUSED
            return STALE_REF
        return None if old_sha == current else STALE_REF

    def _on_post_receive(self, client_refs) -> None:
        repo, world = self.repo_record, self.hosting.world
        for _old, new, ref_name in client_refs:
            branch = ref_name[len(HEADS) :].decode()
            if new == ZERO:
                world.branch_delete(
                    workspace=repo.workspace,
                    slug=repo.slug,
                    branch=branch,
                    actor=self.principal.account,
                )
            else:
                world.commits_import(
                    workspace=repo.workspace,
                    slug=repo.slug,
                    branch=branch,
                    commits=self.mirror.world_commits(repo, new),
                    tip=new.decode(),
                    actor=self.principal.account,
                )
            self.hosting.api.writes.count_push()
