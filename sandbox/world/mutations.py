"""The world's mutations: what tests (and the control API) change between syncs.

Each behaves as the real service does (a push or a repository edit bumps ``updated_on``) and
is announced to the listeners, under the lock, so the servers can deliver webhooks.
"""

import uuid as uuid_module
from collections.abc import Iterable
from typing import Any

from sandbox.world.store import (
    READ_KINDS,
    Account,
    Commit,
    Conflict,
    Denied,
    Invalid,
    NotFound,
    Project,
    PullRequest,
    ReadTrap,
    Repository,
    RepositoryGone,
    WorldStore,
    personal_project_key,
    slugify,
)


class WorldMutations(WorldStore):
    # -- accounts ----------------------------------------------------------------------------

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

    def branch_create(
        self, *, workspace: str, slug: str, branch: str, target: str, actor: str | None = None
    ) -> str:
        """A new branch at ``target`` (a branch name or hash), announced as a push that creates
        it with no new commits; returns the tip's hash."""
        with self.lock:
            repo = self.repository(workspace, slug)
            if branch in repo.branches:
                raise Conflict(f"Branch {branch} already exists")
            commit = repo.resolve(target)
            if commit is None:
                raise NotFound(f"Commit {target} not found")
            repo.branches[branch] = commit.hash
            if repo.mainbranch is None:
                repo.mainbranch = branch
            repo.updated_on = self.tick()
            self._emit(
                "push",
                repo,
                actor or self.default_actor(repo.workspace),
                changes=[self._change(repo, branch, None, commit.hash, [])],
            )
            return commit.hash

    def commits_import(
        self,
        *,
        workspace: str,
        slug: str,
        branch: str,
        commits: list[Commit],
        tip: str,
        actor: str | None = None,
    ) -> None:
        """Commits made elsewhere (a git push: their hashes are their git ids, parents first)
        and the branch moved to ``tip``, as one push. A fast-forward only: the servers refuse
        anything else before calling this."""
        with self.lock:
            repo = self.repository(workspace, slug)
            for commit in commits:
                repo.commits[commit.hash] = commit
            if tip not in repo.commits:
                raise NotFound(f"Commit {tip} not found")
            old = repo.branches.get(branch)
            if not commits:
                if old is None:
                    self.branch_create(
                        workspace=workspace, slug=slug, branch=branch, target=tip, actor=actor
                    )
                    return
                if old == tip:
                    return
            if commits and commits[-1].hash != tip:
                raise Invalid("The imported commits must end with the new tip")
            self._advance(repo, branch, commits or [repo.commits[tip]], actor=actor)

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
