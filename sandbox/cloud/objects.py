"""World objects → Bitbucket Cloud REST 2.0 JSON (and webhook payloads).

Shapes follow the Swagger definitions (``repository``, ``pullrequest``, ...) and recorded real
responses; where the two differ the real one wins (``mainbranch`` and ``merge_commit`` are null
rather than absent, repositories carry ``branches``/``tags``/``source`` links). Absolute links are
built on the origin the client used, so a sandbox on any port links to itself.
"""

import html
import mimetypes
from typing import Any
from urllib.parse import quote

from sandbox.world import (
    Commit,
    Project,
    PullRequest,
    Repository,
    Workspace,
    World,
    format_time,
)

MERGE_STRATEGIES = ["merge_commit", "squash", "fast_forward"]
PUSH_COMMITS_SHOWN = 5  # a push payload lists the newest five commits and says when it cut more


def _link(href: str) -> dict:
    return {"href": href}


def _markup(raw: str) -> dict:
    return {
        "raw": raw,
        "markup": "markdown",
        "html": f"<p>{html.escape(raw)}</p>" if raw else "",
    }


def content_type(path: str) -> str:
    """From the extension only, without a charset (as Bitbucket serves raw files)."""
    extra = {".yaml": "application/x-yaml", ".yml": "application/x-yaml", ".md": "text/markdown"}
    for suffix, value in extra.items():
        if path.endswith(suffix):
            return value
    return mimetypes.guess_type(path)[0] or "application/octet-stream"


class CloudRenderer:
    def __init__(self, world: World, base_url: str):
        self.world = world
        self.web = base_url.rstrip("/")
        self.api = f"{self.web}/2.0"

    def _repo_api(self, repo: Repository) -> str:
        return f"{self.api}/repositories/{repo.full_name}"

    # -- accounts and workspaces ---------------------------------------------------------------

    def account(self, uuid: str | None) -> dict | None:
        account = self.world.account(uuid)
        if account is None:
            return None
        return {
            "type": "user",
            "uuid": account.uuid,
            "account_id": account.account_id,
            "nickname": account.nickname,
            "display_name": account.display_name,
            "links": {
                "self": _link(f"{self.api}/users/{quote(account.uuid)}"),
                "html": _link(f"{self.web}/{quote(account.uuid)}/"),
                "avatar": _link(f"{self.web}/account/{account.nickname}/avatar/"),
            },
        }

    def user(self, uuid: str) -> dict:
        """``/user``: the condensed account plus the profile fields."""
        account = self.world.account(uuid)
        document = self.account(uuid) or {}
        document["links"]["repositories"] = _link(f"{self.api}/repositories/{quote(uuid)}")
        document.update(
            {
                "created_on": format_time(account.created_on),
                "account_status": "active",
                "is_staff": False,
                "location": None,
            }
        )
        return document

    def team(self, ws: Workspace) -> dict:
        return {
            "type": "team",
            "uuid": ws.uuid,
            "username": ws.slug,
            "display_name": ws.name,
            "links": {
                "self": _link(f"{self.api}/workspaces/{ws.slug}"),
                "html": _link(f"{self.web}/{ws.slug}/"),
                "avatar": _link(f"{self.web}/workspaces/{ws.slug}/avatar/"),
            },
        }

    def workspace_condensed(self, ws: Workspace) -> dict:
        return {
            "type": "workspace",
            "uuid": ws.uuid,
            "name": ws.name,
            "slug": ws.slug,
            "links": {
                "self": _link(f"{self.api}/workspaces/{ws.slug}"),
                "html": _link(f"{self.web}/{ws.slug}/"),
                "avatar": _link(f"{self.web}/workspaces/{ws.slug}/avatar/"),
            },
        }

    def workspace(self, ws: Workspace) -> dict:
        document = self.workspace_condensed(ws)
        document["links"].update(
            {
                "members": _link(f"{self.api}/workspaces/{ws.slug}/members"),
                "owners": _link(
                    f"{self.api}/workspaces/{ws.slug}/members?q=permission%3D%22owner%22"
                ),
                "projects": _link(f"{self.api}/workspaces/{ws.slug}/projects"),
                "repositories": _link(f"{self.api}/repositories/{ws.slug}"),
                "snippets": _link(f"{self.api}/snippets/{ws.slug}"),
            }
        )
        document.update({"is_private": ws.is_private, "created_on": format_time(ws.created_on)})
        return document

    # -- projects ------------------------------------------------------------------------------

    def project_condensed(self, ws: Workspace, project: Project) -> dict:
        return {
            "type": "project",
            "key": project.key,
            "uuid": project.uuid,
            "name": project.name,
            "links": {
                "html": _link(f"{self.web}/{ws.slug}/workspace/projects/{project.key}"),
                "avatar": _link(f"{self.web}/{ws.slug}/workspace/projects/{project.key}/avatar"),
            },
        }

    def project(self, ws: Workspace, project: Project) -> dict:
        document = self.project_condensed(ws, project)
        public = any(
            not r.is_private for r in ws.repositories.values() if r.project_key == project.key
        )
        document.update(
            {
                "description": project.description,
                "is_private": project.is_private,
                "created_on": format_time(project.created_on),
                "updated_on": format_time(project.updated_on),
                "has_publicly_visible_repos": public,
                "owner": self.team(ws),
                "workspace": self.workspace_condensed(ws),
            }
        )
        return document

    # -- repositories --------------------------------------------------------------------------

    def repository_condensed(self, repo: Repository) -> dict:
        return {
            "type": "repository",
            "full_name": repo.full_name,
            "name": repo.name,
            "uuid": repo.uuid,
            "links": {
                "self": _link(self._repo_api(repo)),
                "html": _link(f"{self.web}/{repo.full_name}"),
                "avatar": _link(f"{self.web}/{repo.full_name}/avatar/32/"),
            },
        }

    def repository(self, repo: Repository) -> dict:
        ws = self.world.workspaces[repo.workspace]
        api = self._repo_api(repo)
        host = self.web.split("://", 1)[-1].split(":")[0]
        document = self.repository_condensed(repo)
        document["links"].update(
            {
                "pullrequests": _link(f"{api}/pullrequests"),
                "commits": _link(f"{api}/commits"),
                "forks": _link(f"{api}/forks"),
                "watchers": _link(f"{api}/watchers"),
                "downloads": _link(f"{api}/downloads"),
                "hooks": _link(f"{api}/hooks"),
                "branches": _link(f"{api}/refs/branches"),
                "tags": _link(f"{api}/refs/tags"),
                "source": _link(f"{api}/src"),
                "clone": [
                    {"name": "https", "href": f"{self.web}/{repo.full_name}.git"},
                    {"name": "ssh", "href": f"git@{host}:{repo.full_name}.git"},
                ],
            }
        )
        document.update(
            {
                "slug": repo.slug,
                "description": repo.description,
                "scm": "git",
                "is_private": repo.is_private,
                "fork_policy": repo.fork_policy,
                "language": repo.language,
                "website": repo.website,
                "has_issues": repo.has_issues,
                "has_wiki": repo.has_wiki,
                "size": repo.size,
                "created_on": format_time(repo.created_on),
                "updated_on": format_time(repo.updated_on),
                "mainbranch": (
                    {"name": repo.mainbranch, "type": "branch"} if repo.mainbranch else None
                ),
                "workspace": self.workspace_condensed(ws),
                "owner": self.team(ws),
            }
        )
        if repo.project_key in ws.projects:  # a repository in no project has no ``project``
            document["project"] = self.project_condensed(ws, ws.projects[repo.project_key])
        return document

    # -- commits -------------------------------------------------------------------------------

    def commit_ref(self, repo: Repository, sha: str) -> dict:
        return {
            "type": "commit",
            "hash": sha,
            "links": {
                "self": _link(f"{self._repo_api(repo)}/commit/{sha}"),
                "html": _link(f"{self.web}/{repo.full_name}/commits/{sha}"),
            },
        }

    def author(self, raw: str) -> dict:
        document: dict[str, Any] = {"type": "author", "raw": raw}
        email = raw.rsplit("<", 1)[-1].rstrip(">") if "<" in raw else ""
        account = self.world.account_by_email(email) if email else None
        if account is not None:
            document["user"] = self.account(account.uuid)
        return document

    def commit(self, repo: Repository, commit: Commit) -> dict:
        api = f"{self._repo_api(repo)}"
        return {
            "type": "commit",
            "hash": commit.hash,
            "date": format_time(commit.date),
            "message": commit.message,
            "author": self.author(commit.author),
            "summary": _markup(commit.message),
            "parents": [self.commit_ref(repo, sha) for sha in commit.parents],
            "repository": self.repository_condensed(repo),
            "links": {
                "self": _link(f"{api}/commit/{commit.hash}"),
                "html": _link(f"{self.web}/{repo.full_name}/commits/{commit.hash}"),
                "diff": _link(f"{api}/diff/{commit.hash}"),
                "patch": _link(f"{api}/patch/{commit.hash}"),
                "comments": _link(f"{api}/commit/{commit.hash}/comments"),
                "approve": _link(f"{api}/commit/{commit.hash}/approve"),
                "statuses": _link(f"{api}/commit/{commit.hash}/statuses"),
            },
        }

    def commit_file(self, repo: Repository, commit: Commit, path: str, size: int) -> dict:
        src = f"{self._repo_api(repo)}/src/{commit.hash}/{quote(path)}"
        return {
            "type": "commit_file",
            "path": path,
            "escaped_path": path,
            "size": size,
            "mimetype": content_type(path),
            "attributes": [],
            "commit": self.commit_ref(repo, commit.hash),
            "links": {
                "self": _link(src),
                "meta": _link(f"{src}?format=meta"),
                "history": _link(f"{self._repo_api(repo)}/filehistory/{commit.hash}/{path}"),
            },
        }

    def commit_directory(self, repo: Repository, commit: Commit, path: str) -> dict:
        src = f"{self._repo_api(repo)}/src/{commit.hash}/{quote(path)}/"
        return {
            "type": "commit_directory",
            "path": path,
            "commit": self.commit_ref(repo, commit.hash),
            "links": {"self": _link(src), "meta": _link(f"{src}?format=meta")},
        }

    # -- pull requests -------------------------------------------------------------------------

    def _endpoint(self, repo: Repository, branch: str, sha: str) -> dict:
        return {
            "branch": {"name": branch},
            "commit": {"hash": sha[:12]},
            "repository": self.repository_condensed(repo),
        }

    def pullrequest(self, repo: Repository, pr: PullRequest) -> dict:
        """The full pull request; list endpoints leave out ``reviewers`` and ``participants``
        unless asked for with ``fields``."""
        api = f"{self._repo_api(repo)}/pullrequests/{pr.id}"
        participants = [
            {
                "type": "participant",
                "user": self.account(uuid),
                "role": "REVIEWER",
                "approved": uuid in pr.approvals,
                "state": "approved" if uuid in pr.approvals else None,
                "participated_on": format_time(pr.updated_on) if uuid in pr.approvals else None,
            }
            for uuid in pr.reviewers
        ]
        return {
            "type": "pullrequest",
            "id": pr.id,
            "title": pr.title,
            "description": pr.description,
            "summary": _markup(pr.description),
            "state": pr.state,
            "author": self.account(pr.author),
            "source": self._endpoint(repo, pr.source_branch, pr.source_commit),
            "destination": self._endpoint(repo, pr.destination_branch, pr.destination_commit),
            "merge_commit": {"hash": pr.merge_commit[:12]} if pr.merge_commit else None,
            "comment_count": pr.comment_count,
            "task_count": pr.task_count,
            "close_source_branch": pr.close_source_branch,
            "closed_by": self.account(pr.closed_by),
            "reason": pr.reason,
            "created_on": format_time(pr.created_on),
            "updated_on": format_time(pr.updated_on),
            "reviewers": [self.account(uuid) for uuid in pr.reviewers],
            "participants": participants,
            "links": {
                "self": _link(api),
                "html": _link(f"{self.web}/{repo.full_name}/pull-requests/{pr.id}"),
                "commits": _link(f"{api}/commits"),
                "approve": _link(f"{api}/approve"),
                "diff": _link(f"{api}/diff"),
                "diffstat": _link(f"{api}/diffstat"),
                "comments": _link(f"{api}/comments"),
                "activity": _link(f"{api}/activity"),
                "merge": _link(f"{api}/merge"),
                "decline": _link(f"{api}/decline"),
            },
        }

    # -- webhooks ------------------------------------------------------------------------------

    def hook(self, hook) -> dict:
        if hook.repository:
            repo = self._find_repo(hook.repository)
            subject = self.repository_condensed(repo) if repo else {"type": "repository"}
            self_href = f"{self._repo_api(repo)}/hooks/{quote(hook.uuid)}" if repo else ""
        else:
            ws = self._find_ws(hook.workspace)
            subject = self.workspace_condensed(ws) if ws else {"type": "workspace"}
            self_href = f"{self.api}/workspaces/{ws.slug}/hooks/{quote(hook.uuid)}" if ws else ""
        return {
            "type": "webhook_subscription",
            "uuid": hook.uuid,
            "url": hook.url,
            "description": hook.description,
            "subject_type": "repository" if hook.repository else "workspace",
            "subject": subject,
            "active": hook.active,
            "events": sorted(hook.events),
            "secret_set": bool(hook.secret),
            "created_at": format_time(hook.created_at),
            "links": {"self": _link(self_href)},
        }

    def _find_repo(self, uuid: str) -> Repository | None:
        return next((r for r in self.world.iter_repositories() if r.uuid == uuid), None)

    def _find_ws(self, uuid: str) -> Workspace | None:
        return next((w for w in self.world.workspaces.values() if w.uuid == uuid), None)

    def hook_repository(self, repo: Repository) -> dict:
        """The repository as webhook payloads carry it."""
        ws = self.world.workspaces.get(repo.workspace)
        document = self.repository_condensed(repo)
        document.update({"scm": "git", "website": repo.website, "is_private": repo.is_private})
        if ws is not None:
            document["workspace"] = self.workspace_condensed(ws)
            document["owner"] = self.team(ws)
            if repo.project_key in ws.projects:
                document["project"] = self.project_condensed(ws, ws.projects[repo.project_key])
        return document

    def push_change(self, repo: Repository, change: dict) -> dict:
        branch = change["branch"]

        def ref(sha: str | None) -> dict | None:
            if sha is None:
                return None
            commit = repo.commits[sha]
            return {
                "type": "branch",
                "name": branch,
                "target": self.commit_summary(repo, commit),
                "links": {
                    "self": _link(f"{self._repo_api(repo)}/refs/branches/{branch}"),
                    "commits": _link(f"{self._repo_api(repo)}/commits/{branch}"),
                    "html": _link(f"{self.web}/{repo.full_name}/branch/{branch}"),
                },
                "default_merge_strategy": "merge_commit",
                "merge_strategies": MERGE_STRATEGIES,
            }

        commits = change["commits"]
        old, new = change["old"], change["new"]
        spec = f"{new or ''}..{old or ''}"
        return {
            "old": ref(old),
            "new": ref(new),
            "created": change["created"],
            "closed": change["closed"],
            "forced": change["forced"],
            "truncated": len(commits) > PUSH_COMMITS_SHOWN,
            "commits": [self.commit_summary(repo, c) for c in commits[:PUSH_COMMITS_SHOWN]],
            "links": {
                "html": _link(f"{self.web}/{repo.full_name}/branches/compare/{spec}"),
                "diff": _link(f"{self._repo_api(repo)}/diff/{spec}"),
                "commits": _link(
                    f"{self._repo_api(repo)}/commits?include={new or ''}&exclude={old or ''}"
                ),
            },
        }

    def commit_summary(self, repo: Repository, commit: Commit) -> dict:
        document = self.commit(repo, commit)
        document.pop("repository")
        document["links"] = {k: document["links"][k] for k in ("self", "html", "diff")}
        return document
