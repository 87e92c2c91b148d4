"""World objects → Bitbucket Data Center REST 1.0 JSON (and webhook payloads).

Shapes follow the 9.4 OpenAPI definitions (``RestRepository``, ``RestPullRequest``, ``RestCommit``
...) and recorded real responses where they differ: ``links`` hold arrays, dates are epoch
milliseconds, ``defaultBranch`` is not in repository listings (it is write-only in the spec; the
``/default-branch`` resource answers it), a pull request carries ``author``, and empty descriptions
are left out. Ids are integers, stable for a world (see :class:`DcIds`).
"""

import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from sandbox.world import Account, Commit, Project, PullRequest, Repository, World

ZERO_HASH = "0" * 40
# Data Center has no SUPERSEDED: such a pull request was declined.
DC_PR_STATES = {
    "OPEN": "OPEN",
    "MERGED": "MERGED",
    "DECLINED": "DECLINED",
    "SUPERSEDED": "DECLINED",
}


def millis(value: datetime | None) -> int | None:
    """Data Center's timestamps: epoch milliseconds."""
    return None if value is None else int(value.timestamp() * 1000)


def webhook_date(value: datetime) -> str:
    """Webhook payloads carry ``2017-09-19T09:58:11+0000``, not milliseconds."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S%z")


def _links(*hrefs: str, **named: list[dict]) -> dict:
    return {"self": [{"href": href} for href in hrefs], **named}


class DcIds:
    """Integer ids for world objects: the existing ones numbered in creation order when the
    server starts (so two servers over equal worlds agree), later ones as they first appear."""

    def __init__(self, world: World, workspace: str):
        self._ids: dict[tuple[str, str], int] = {}
        self._next: dict[str, int] = {}
        ws = world.workspaces[workspace]
        for project in sorted(ws.projects.values(), key=lambda p: (p.created_on, p.key)):
            self.get("project", project.key)
        for repo in sorted(ws.repositories.values(), key=lambda r: (r.created_on, r.uuid)):
            self.get("repository", repo.uuid)
        for account in sorted(world.accounts.values(), key=lambda a: (a.created_on, a.uuid)):
            self.get("user", account.uuid)

    def get(self, kind: str, key: str) -> int:
        found = self._ids.get((kind, key))
        if found is None:
            found = self._next.get(kind, 1)
            self._next[kind] = found + 1
            self._ids[(kind, key)] = found
        return found


def _parse_author(raw: str) -> tuple[str, str]:
    match = re.fullmatch(r"\s*(.*?)\s*<([^>]*)>\s*", raw or "")
    if match:
        return match.group(1), match.group(2)
    return raw or "", ""


class DcRenderer:
    def __init__(self, world: World, ids: DcIds, web_url: str):
        self.world = world
        self.ids = ids
        self.web = web_url.rstrip("/")
        host = self.web.split("://", 1)[-1].split("/")[0].rsplit(":", 1)[0]
        self.ssh = f"ssh://git@{host}:7999"

    # -- users and projects ----------------------------------------------------------------

    def user(self, uuid: str | None) -> dict | None:
        account = self.world.account(uuid)
        return None if account is None else self._user(account)

    def _user(self, account: Account) -> dict:
        return {
            "name": account.nickname,
            "emailAddress": account.email,
            "active": True,
            "displayName": account.display_name,
            "id": self.ids.get("user", account.uuid),
            "slug": account.nickname,
            "type": "SERVICE" if account.kind == "bot" else "NORMAL",
            "links": _links(f"{self.web}/users/{quote(account.nickname)}"),
        }

    def project(self, project: Project) -> dict:
        """A project; a personal one (``~USER``) is ``type: PERSONAL`` with its ``owner`` and
        its page under ``/users/{slug}`` [seen]."""
        owner = self.world.account(project.owner) if project.personal else None
        href = f"{self.web}/projects/{project.key}"
        if owner is not None:
            href = f"{self.web}/users/{quote(owner.nickname)}"
        document = {
            "key": project.key,
            "id": self.ids.get("project", project.key),
            "name": project.name,
            "public": not project.is_private,
            "type": "PERSONAL" if project.personal else "NORMAL",
            "links": _links(href),
        }
        if owner is not None:
            document["owner"] = self._user(owner)
        if project.description:
            document["description"] = project.description
        return document

    # -- repositories ------------------------------------------------------------------------

    def web_url(self, repo: Repository) -> str:
        project = self.world.workspaces[repo.workspace].projects[repo.project_key]
        owner = self.world.account(project.owner) if project.personal else None
        if owner is not None:
            return f"{self.web}/users/{quote(owner.nickname)}/repos/{quote(repo.slug)}"
        return f"{self.web}/projects/{repo.project_key}/repos/{quote(repo.slug)}"

    def repository(self, repo: Repository) -> dict:
        ws = self.world.workspaces[repo.workspace]
        clone_path = f"{quote(repo.project_key.lower())}/{quote(repo.slug)}.git"
        document: dict[str, Any] = {
            "slug": repo.slug,
            "id": self.ids.get("repository", repo.uuid),
            "name": repo.name,
            "hierarchyId": repo.uuid.strip("{}").replace("-", "")[:20],
            "scmId": "git",
            "state": "AVAILABLE",
            "statusMessage": "Available",
            "forkable": True,
            "project": self.project(ws.projects[repo.project_key]),
            "public": not repo.is_private,
            "archived": False,
            "links": {
                "clone": [
                    {"href": f"{self.web}/scm/{clone_path}", "name": "http"},
                    {"href": f"{self.ssh}/{clone_path}", "name": "ssh"},
                ],
                "self": [{"href": f"{self.web_url(repo)}/browse"}],
            },
        }
        if repo.description:
            document["description"] = repo.description
        return document

    @staticmethod
    def branch_ref(name: str) -> dict:
        return {"id": f"refs/heads/{name}", "displayId": name, "type": "BRANCH"}

    @classmethod
    def branch(cls, name: str, tip: str, *, default: bool) -> dict:
        """A ``RestBranch``: the ref with its tip (``latestCommit``, and the older
        ``latestChangeset``); ``isDefault`` as real instances spell it [seen]."""
        return {
            **cls.branch_ref(name),
            "latestCommit": tip,
            "latestChangeset": tip,
            "isDefault": default,
        }

    # -- pull requests -----------------------------------------------------------------------

    def _pr_ref(self, repo: Repository, branch: str, commit: str) -> dict:
        return {
            **self.branch_ref(branch),
            "latestCommit": commit,
            "repository": self.repository(repo),
        }

    def _participant(self, uuid: str, role: str, pr: PullRequest) -> dict:
        approved = uuid in pr.approvals
        return {
            "user": self.user(uuid),
            "role": role,
            "approved": approved,
            "status": "APPROVED" if approved else "UNAPPROVED",
        }

    def pull_request(self, repo: Repository, pr: PullRequest) -> dict:
        state = DC_PR_STATES.get(pr.state, "DECLINED")
        closed = state != "OPEN"
        document: dict[str, Any] = {
            "id": pr.id,
            "version": 0 if pr.updated_on == pr.created_on else 1,
            "title": pr.title,
            "state": state,
            "open": not closed,
            "closed": closed,
            "draft": False,
            "createdDate": millis(pr.created_on),
            "updatedDate": millis(pr.updated_on),
            "fromRef": self._pr_ref(repo, pr.source_branch, pr.source_commit),
            "toRef": self._pr_ref(repo, pr.destination_branch, pr.destination_commit),
            "locked": False,
            "author": self._participant(pr.author, "AUTHOR", pr),
            "reviewers": [self._participant(uuid, "REVIEWER", pr) for uuid in pr.reviewers],
            "participants": [],
            "properties": {
                "resolvedTaskCount": 0,
                "commentCount": pr.comment_count,
                "openTaskCount": pr.task_count,
            },
            "links": _links(f"{self.web_url(repo)}/pull-requests/{pr.id}"),
        }
        document["author"]["approved"] = False
        document["author"]["status"] = "UNAPPROVED"
        if closed:
            document["closedDate"] = millis(pr.updated_on)
        if pr.description:
            document["description"] = pr.description
        return document

    # -- commits -----------------------------------------------------------------------------

    def person(self, raw_author: str) -> dict:
        """A commit author: the user when the e-mail belongs to one, else name and e-mail."""
        name, email = _parse_author(raw_author)
        account = self.world.account_by_email(email) if email else None
        if account is not None:
            return self._user(account)
        return {"name": name, "emailAddress": email}

    def commit(self, commit: Commit) -> dict:
        person = self.person(commit.author)
        return {
            "id": commit.hash,
            "displayId": commit.hash[:11],
            "author": person,
            "authorTimestamp": millis(commit.date),
            "committer": person,
            "committerTimestamp": millis(commit.date),
            "message": commit.message,
            "parents": [{"id": sha, "displayId": sha[:11]} for sha in commit.parents],
        }

    # -- webhooks ----------------------------------------------------------------------------

    @staticmethod
    def webhook(hook) -> dict:
        return {
            "id": hook.id,
            "name": hook.name,
            "createdDate": millis(hook.created),
            "updatedDate": millis(hook.updated),
            "events": list(hook.events),
            "configuration": {},  # the secret is never returned [guess]
            "url": hook.url,
            "active": hook.active,
            "scopeType": hook.scope_type,
            "sslVerificationRequired": True,
        }

    def change(self, change: dict) -> dict:
        """A push's branch change as ``repo:refs_changed`` lists it."""
        old, new = change.get("old"), change.get("new")
        kind = "ADD" if old is None else "DELETE" if new is None else "UPDATE"
        ref = self.branch_ref(change["branch"])
        return {
            "ref": ref,
            "refId": ref["id"],
            "fromHash": old or ZERO_HASH,
            "toHash": new or ZERO_HASH,
            "type": kind,
        }
