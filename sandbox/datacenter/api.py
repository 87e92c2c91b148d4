"""The Bitbucket Data Center REST 1.0 sandbox: one workspace of the world served as a self-hosted
instance (its projects keep their keys), over HTTPS with a private CA (see ``server.py``).

The pipeline (:class:`SandboxApi`, shared with Cloud) runs with Data Center's manners: paged
envelopes (``size``, ``limit``, ``isLastPage``, ``start``, ``nextPageStart``, ``values``; default
limit 25, capped at a configurable maximum the client must read back), ``{"errors": [...]}``
bodies, **401 for a missing credential and for a missing permission alike**, epoch-millisecond
dates, personal access tokens as Bearer tokens and OAuth 2.0 application links. Faults, rate limits
and the request log come from the same :mod:`traffic` module as the Cloud sandbox, and the
``/_sandbox`` control API is shared (plus ``/_sandbox/dc/...`` for what only this one has).

A user's personal project is ``~USER`` (``type: PERSONAL``, with its ``owner``); its repositories
are in ``/repos`` and answer under ``/projects/~user/repos/...`` and ``/users/user/repos/...``.
"""

import html
import re
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from sandbox.api_base import (
    SandboxApi,
    oauth_error_response,
    oauth_redirect,
    oauth_token_response,
)
from sandbox.auth import AuthError, OAuthError
from sandbox.control import PREFIX as CONTROL_PREFIX
from sandbox.control import routes as control_routes
from sandbox.datacenter.credentials import DC_NOT_PERMITTED, DcPrincipal
from sandbox.datacenter.git import GitHosting
from sandbox.datacenter.objects import DcIds, DcRenderer, webhook_date
from sandbox.datacenter.writes import DcWrites
from sandbox.routing import ApiError, Request, Response, Route, Router
from sandbox.traffic import FaultInjector, RateLimitConfig, RateLimiter, RequestLog
from sandbox.webhooks import WebhookSender
from sandbox.world import (
    Commit,
    Conflict,
    Denied,
    Invalid,
    NotFound,
    Project,
    Repository,
    RepositoryGone,
    World,
    WorldEvent,
)
from sandbox.writes import WriteFaults, write_control_routes

API = "/rest/api/1.0"
OAUTH = "/rest/oauth2/latest"
# What the consent page posts back of the authorize request.
AUTHORIZE_PARAMS = (
    "client_id",
    "redirect_uri",
    "response_type",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
)
CONSENT_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Authorize access - Bitbucket</title></head>
<body>
<main>
<h1>Authorize {client}</h1>
<p>Signed in as <strong>{user}</strong>.</p>
<p>{client} wants to access your Bitbucket account with these permissions: {scopes}.</p>
<form method="post">
{hidden}
<button type="submit" name="decision" value="allow">Allow</button>
<button type="submit" name="decision" value="deny">Deny</button>
</form>
</main>
</body></html>
"""
DEFAULT_LIMIT = 25
DEFAULT_MAX_LIMIT = 1000
DC_FAULT_PATHS = r"^/rest/api/"
# ``/users/{slug}/repos...`` is the personal project ``~{slug}``'s ``/projects/~{slug}/repos...``.
USER_REPOS = re.compile(rf"^{re.escape(API)}/users/([^/]+)/repos(/.*)?$")
PR_STATES = ("OPEN", "DECLINED", "MERGED")
WEBHOOK_EVENTS = frozenset(
    {
        "repo:refs_changed",
        "repo:modified",
        "repo:forked",
        "repo:comment:added",
        "repo:comment:edited",
        "repo:comment:deleted",
        "repo:secret_detected",
        "mirror:repo_synchronized",
        "pr:opened",
        "pr:from_ref_updated",
        "pr:to_ref_updated",
        "pr:modified",
        "pr:merged",
        "pr:declined",
        "pr:deleted",
        "pr:reviewer:updated",
        "pr:reviewer:approved",
        "pr:reviewer:unapproved",
        "pr:reviewer:needs_work",
        "pr:comment:added",
        "pr:comment:edited",
        "pr:comment:deleted",
    }
)
# World events → Data Center event keys. A push that moves an open pull request's source branch
# is announced by the world as ``pullrequest.updated`` too, so both map to ``pr:modified``.
EVENT_KEYS = {
    "push": "repo:refs_changed",
    "repository.updated": "repo:modified",
    "pullrequest.created": "pr:opened",
    "pullrequest.updated": "pr:modified",
    "pullrequest.merged": "pr:merged",
    "pullrequest.declined": "pr:declined",
    "pullrequest.approved": "pr:reviewer:approved",
    "pullrequest.unapproved": "pr:reviewer:unapproved",
    "pullrequest.comment_created": "pr:comment:added",
}
EXCEPTIONS = {
    401: "com.atlassian.bitbucket.AuthorisationException",
    404: "com.atlassian.bitbucket.NoSuchEntityException",
    400: "com.atlassian.bitbucket.validation.ArgumentValidationException",
    405: "com.atlassian.bitbucket.rest.MethodNotAllowedException",
    409: "com.atlassian.bitbucket.IntegrityException",
    429: "com.atlassian.bitbucket.throttle.ThrottledException",
    500: "java.lang.RuntimeException",
}


class DcError(ApiError):
    """An error response in Data Center's shape: ``{"errors": [{context, message,
    exceptionName}]}``."""

    def __init__(self, status: int, message: str, exception: str | None = None, **kwargs):
        super().__init__(status, message, **kwargs)
        fallback = "com.atlassian.bitbucket.ServiceException"
        self.exception = exception or EXCEPTIONS.get(status, fallback)

    def document(self) -> dict:
        error = {"context": None, "message": self.message, "exceptionName": self.exception}
        error.update(getattr(self, "extra", {}))  # e.g. a duplicate's ``existingPullRequest``
        return {"errors": [error]}


def _unauthorized(message: str = DC_NOT_PERMITTED, exception: str | None = None) -> DcError:
    return DcError(401, message, exception, headers={"WWW-Authenticate": 'Basic realm="Bitbucket"'})


def _dc_error(exc: Exception) -> DcError:
    """A world or Cloud-shaped error in Data Center's shape."""
    if isinstance(exc, DcError):
        return exc
    if isinstance(exc, ApiError):
        message = exc.detail or exc.message
        return DcError(exc.status, message, headers=dict(exc.headers))
    if isinstance(exc, Denied):
        if exc.status == 401:
            return _unauthorized()
        if exc.status == 403:
            return DcError(403, DC_NOT_PERMITTED, EXCEPTIONS[401])
        return DcError(exc.status, str(exc))
    if isinstance(exc, NotFound):
        return DcError(404, str(exc))
    if isinstance(exc, Conflict):
        return DcError(409, str(exc))
    if isinstance(exc, Invalid):
        return DcError(400, str(exc))
    return DcError(400, str(exc))


@dataclass
class DcHook:
    id: int
    name: str
    url: str
    events: list[str]
    active: bool
    secret: str | None
    created: datetime
    updated: datetime
    project: str  # key
    repository: str | None = None  # uuid; None for a project webhook

    @property
    def scope_type(self) -> str:
        return "project" if self.repository is None else "repository"


@dataclass
class Paging:
    """The instance's paging limits. ``short_pages`` serves one item fewer than the limit on
    every page (as permission filtering does on a real instance), so a client that adds
    ``limit`` to ``start`` instead of following ``nextPageStart`` skips items."""

    max_limit: int = DEFAULT_MAX_LIMIT
    default_limit: int = DEFAULT_LIMIT
    short_pages: bool = False


class DcFaultInjector(FaultInjector):
    """The shared injector, aimed at the REST API by default."""

    def configure(self, **values):
        values.setdefault("path_pattern", DC_FAULT_PATHS)
        return super().configure(**values)


class DcWebhookSender(WebhookSender):
    """Deliveries with Data Center's headers (``X-Event-Key``, ``X-Request-Id``,
    ``X-Hub-Signature``), not retried."""

    def __init__(self, *, timeout: float = 10.0):
        super().__init__(timeout=timeout, retries=0, user_agent="Bitbucket Version/9.4.1")

    def _post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        headers = dict(headers)
        headers.pop("X-Hook-UUID", None)
        headers.pop("X-Attempt-Number", None)
        headers["X-Request-Id"] = headers.pop("X-Request-UUID")
        headers["Content-Type"] = "application/json; charset=utf-8"
        return super()._post(url, body, headers)


class DataCenterApi(DcWrites, SandboxApi):
    kind = "dc"
    hook_key = "id"

    def __init__(
        self,
        world: World,
        *,
        workspace: str | None = None,
        version: str = "9.4.1",
        display_name: str = "Bitbucket",
        max_limit: int = DEFAULT_MAX_LIMIT,
        short_pages: bool = False,
        webhook_timeout: float = 10.0,
    ):
        self.world = world
        self.workspace = workspace or next(iter(world.workspaces))
        if self.workspace not in world.workspaces:
            raise ValueError(f"No workspace {self.workspace!r} in the world")
        self.properties = {
            "version": version,
            "buildNumber": "".join(f"{int(p):03d}" for p in re.findall(r"\d+", version)[:3]),
            "buildDate": "1735689600000",
            "displayName": display_name,
        }
        self.paging = Paging(max_limit=max_limit, short_pages=short_pages)
        self.ids = DcIds(world, self.workspace)
        self.log = RequestLog()
        self.faults = DcFaultInjector()
        # Rate limiting is opt-in on Data Center: configure ``limits={"api": n}`` to switch it on.
        self.rate_limits = RateLimiter(
            now=world.clock.timestamp, config=RateLimitConfig(limits={}, retry_after=1)
        )
        self.webhooks = DcWebhookSender(timeout=webhook_timeout)
        self.hooks: dict[int, DcHook] = {}
        self._hook_serial = 0
        self._hooks_lock = threading.Lock()
        self.public_url = "https://127.0.0.1"
        self.writes = WriteFaults()
        self.git = GitHosting(self)
        self.router = Router(
            self._routes()
            + self._write_routes(API)
            + self.git.routes()
            + control_routes(self)
            + self._control_routes()
            + write_control_routes(self, CONTROL_PREFIX, on_upstream=self.git.synced)
        )
        world.subscribe(self._on_world_event)

    def stop(self) -> None:
        super().stop()
        self.git.close()

    def configure(self, **values: Any) -> dict:
        """Change what ``application-properties`` says (``version``, ``displayName``...) or the
        paging limits (``max_limit``, ``default_limit``, ``short_pages``)."""
        for key in ("max_limit", "default_limit", "short_pages"):
            if key in values:
                setattr(self.paging, key, values.pop(key))
        unknown = set(values) - set(self.properties)
        if unknown:
            raise ValueError(f"Unknown settings: {', '.join(sorted(unknown))}")
        self.properties.update({key: str(value) for key, value in values.items()})
        return {**self.properties, **self.paging.__dict__}

    def _routes(self) -> list[Route]:
        project = f"{API}/projects/{{project_key}}"
        repo = f"{project}/repos/{{repo_slug}}"
        return [
            Route("GET", f"{API}/application-properties", self.properties_get, auth=False),
            Route("GET", f"{API}/projects", self.projects_list),
            Route("GET", project, self.project_get),
            Route("GET", f"{API}/repos", self.repositories_list),
            Route("GET", f"{project}/repos", self.project_repositories_list),
            Route("GET", repo, self.repository_get),
            Route("GET", f"{repo}/default-branch", self.default_branch_get),
            Route("GET", f"{repo}/branches/default", self.default_branch_full_get),
            Route("GET", f"{repo}/pull-requests", self.pull_requests_list),
            Route("GET", f"{repo}/pull-requests/{{pr_id}}", self.pull_request_get),
            Route("GET", f"{repo}/commits", self.commits_list),
            Route("GET", f"{repo}/commits/{{commit_id}}", self.commit_get),
            Route("GET", f"{repo}/raw/{{path:path}}", self.raw_get),
            Route("GET", f"{repo}/webhooks", self.hooks_list),
            Route("POST", f"{repo}/webhooks", self.hook_create),
            Route("GET", f"{repo}/webhooks/{{hook_id}}", self.hook_get),
            Route("PUT", f"{repo}/webhooks/{{hook_id}}", self.hook_update),
            Route("DELETE", f"{repo}/webhooks/{{hook_id}}", self.hook_delete),
            Route("GET", f"{project}/webhooks", self.hooks_list),
            Route("POST", f"{project}/webhooks", self.hook_create),
            Route("GET", f"{project}/webhooks/{{hook_id}}", self.hook_get),
            Route("PUT", f"{project}/webhooks/{{hook_id}}", self.hook_update),
            Route("DELETE", f"{project}/webhooks/{{hook_id}}", self.hook_delete),
            Route("GET", f"{OAUTH}/authorize", self.oauth_consent, auth=False),
            Route("POST", f"{OAUTH}/authorize", self.oauth_authorize, auth=False),
            Route("POST", f"{OAUTH}/token", self.oauth_token, auth=False),
        ]

    # -- the pipeline (see SandboxApi): Data Center's errors, throttling and credentials --------

    def handle(self, request: Request) -> Response:
        if request.path.startswith("/rest/api/latest/"):  # ``latest`` is an alias of 1.0
            request.path = API + request.path[len("/rest/api/latest") :]
        personal = USER_REPOS.match(request.path)
        if personal:  # logged as the /projects/~slug/repos path it is
            request.path = f"{API}/projects/~{personal.group(1)}/repos{personal.group(2) or ''}"
        return super().handle(request)

    def _api_error(self, exc: Exception) -> ApiError:
        return _dc_error(exc)

    def _server_error(self) -> ApiError:
        return DcError(500, "An unexpected error occurred")

    def _auth_failure(self, exc: AuthError) -> ApiError:
        exception = "com.atlassian.bitbucket.auth.IncorrectPasswordAuthenticationException"
        return _unauthorized(exc.message, exception)

    def _throttled(self, retry_after: int | None) -> Response:
        error = DcError(429, "You have been rate limited. Please try again later.")
        if retry_after is not None:
            error.headers["Retry-After"] = str(retry_after)
        return Response.error(error)

    def _authenticate(self, request: Request, route: Route) -> DcPrincipal:
        principal = self.world.credentials.dc.authenticate(request.headers.get("Authorization"))
        if principal is None:
            raise _unauthorized()
        return principal

    # -- lookups and visibility ----------------------------------------------------------------

    def _renderer(self) -> DcRenderer:
        return DcRenderer(self.world, self.ids, self.public_url)

    def _sees(self, principal: DcPrincipal, project_key: str) -> bool:
        ws = self.world.workspaces[self.workspace]
        return principal.account in ws.members and principal.sees_project(project_key)

    def _project(self, request: Request) -> Project:
        key = request.params["project_key"].upper()
        project = self.world.workspaces[self.workspace].projects.get(key)
        if project is None:
            raise DcError(
                404,
                f"Project {key} does not exist.",
                "com.atlassian.bitbucket.project.NoSuchProjectException",
            )
        if not self._sees(request.principal, key):
            raise _unauthorized()
        return project

    @staticmethod
    def _no_repository(key: str, slug: str) -> DcError:
        return DcError(
            404,
            f"Repository {key}/{slug} does not exist.",
            "com.atlassian.bitbucket.repository.NoSuchRepositoryException",
        )

    def _repository(self, request: Request, kind: str | None = None) -> Repository:
        """The repository a request names; reading its ``kind`` (pull requests, commits,
        files) springs the world's read trap, if any (see ``World.read_check``)."""
        project = self._project(request)
        slug = request.params["repo_slug"].lower()
        for repo in self.world.workspaces[self.workspace].repositories.values():
            if repo.project_key == project.key and repo.slug.lower() == slug:
                if kind is not None:
                    try:
                        self.world.read_check(repo, kind)
                    except RepositoryGone:
                        raise self._no_repository(project.key, slug) from None
                return repo
        raise self._no_repository(project.key, slug)

    def _visible_repositories(self, principal: DcPrincipal) -> list[Repository]:
        """Every repository in a project (Data Center has no other kind) the caller sees."""
        ws = self.world.workspaces[self.workspace]
        repos = [
            r
            for r in ws.repositories.values()
            if r.project_key is not None and self._sees(principal, r.project_key)
        ]
        repos.sort(key=lambda r: (r.project_key, r.name.lower(), r.slug))
        return repos

    @staticmethod
    def _resolve(repo: Repository, ref: str) -> Commit:
        name = ref[len("refs/heads/") :] if ref.startswith("refs/heads/") else ref
        commit = repo.resolve(name)
        if commit is None:
            raise DcError(
                404,
                f"Commit '{ref}' does not exist in repository '{repo.slug}'.",
                "com.atlassian.bitbucket.commit.NoSuchCommitException",
            )
        return commit

    # -- paging --------------------------------------------------------------------------------

    def _int_arg(self, request: Request, name: str, default: int) -> int:
        raw = request.arg(name)
        if raw in (None, ""):
            return default
        try:
            return int(raw)
        except ValueError:
            raise DcError(400, f"{name}: {raw!r} is not a number") from None

    def _page(self, request: Request, items: list, render=None) -> Response:
        """``start``/``limit`` paging; the limit is capped at the instance's maximum and the
        page says which limit it applied."""
        render = render or (lambda item: item)
        start = max(0, self._int_arg(request, "start", 0))
        limit = self._int_arg(request, "limit", self.paging.default_limit)
        limit = max(1, min(limit, self.paging.max_limit))
        count = limit - 1 if self.paging.short_pages and limit > 1 else limit
        values = [render(item) for item in items[start : start + count]]
        last = start + count >= len(items)
        envelope: dict[str, Any] = {
            "size": len(values),
            "limit": limit,
            "isLastPage": last,
            "values": values,
            "start": start,
        }
        if not last:
            envelope["nextPageStart"] = start + len(values)
        return Response.json(envelope)

    # -- handlers: instance, projects, repositories ---------------------------------------------

    def properties_get(self, request: Request) -> Response:
        return Response.json(dict(self.properties))

    def projects_list(self, request: Request) -> Response:
        with self.world.lock:
            ws = self.world.workspaces[self.workspace]
            name = (request.arg("name") or "").lower()
            # Personal projects are not listed here [guess: as the UI's project list]; their
            # repositories are, in ``/repos``.
            projects = [
                p
                for p in sorted(ws.projects.values(), key=lambda p: p.key)
                if self._sees(request.principal, p.key)
                and name in p.name.lower()
                and not p.personal
            ]
            return self._page(request, projects, self._renderer().project)

    def project_get(self, request: Request) -> Response:
        with self.world.lock:
            return Response.json(self._renderer().project(self._project(request)))

    def repositories_list(self, request: Request) -> Response:
        """``/repos``: every repository the caller may read, with the documented filters."""
        with self.world.lock:
            repos = self._visible_repositories(request.principal)
            ws = self.world.workspaces[self.workspace]
            project_key = (request.arg("projectkey") or "").upper()
            project_name = (request.arg("projectname") or "").lower()
            name = (request.arg("name") or "").lower()
            visibility = (request.arg("visibility") or "").lower()
            state = (request.arg("state") or "").upper()
            archived = (request.arg("archived") or "ACTIVE").upper()
            if visibility not in ("", "public", "private"):
                raise DcError(400, "visibility must be public or private")
            repos = [
                r
                for r in repos
                if (not project_key or r.project_key == project_key)
                and project_name in ws.projects[r.project_key].name.lower()
                and name in r.name.lower()
                and (not visibility or (visibility == "public") == (not r.is_private))
                and state in ("", "AVAILABLE")
                and archived in ("ACTIVE", "ALL")
            ]
            return self._page(request, repos, self._renderer().repository)

    def project_repositories_list(self, request: Request) -> Response:
        with self.world.lock:
            project = self._project(request)
            repos = [
                r
                for r in self._visible_repositories(request.principal)
                if r.project_key == project.key
            ]
            return self._page(request, repos, self._renderer().repository)

    def repository_get(self, request: Request) -> Response:
        with self.world.lock:
            return Response.json(self._renderer().repository(self._repository(request)))

    def default_branch_get(self, request: Request) -> Response:
        with self.world.lock:
            repo = self._repository(request)
            if repo.mainbranch is None:
                raise DcError(
                    404,
                    f"Repository {repo.project_key}/{repo.slug} does not have a default branch.",
                    "com.atlassian.bitbucket.repository.NoDefaultBranchException",
                )
            return Response.json(DcRenderer.branch_ref(repo.mainbranch))

    def default_branch_full_get(self, request: Request) -> Response:
        """``/branches/default`` (deprecated, still served by 9.x): the default branch with its
        ``latestCommit``, or 204 for an empty repository [spec]."""
        with self.world.lock:
            repo = self._repository(request)
            if repo.mainbranch is None:
                return Response(status=204, content_type=None)
            return Response.json(
                DcRenderer.branch(repo.mainbranch, repo.branches[repo.mainbranch], default=True)
            )

    # -- handlers: pull requests, commits, files ------------------------------------------------

    def pull_requests_list(self, request: Request) -> Response:
        """OPEN by default, ``state=ALL`` for every state; ``order=NEWEST`` (the default) is the
        most recently updated first [guess: Data Center documents only "newest first"]."""
        state = (request.arg("state") or "OPEN").upper()
        if state != "ALL" and state not in PR_STATES:
            raise DcError(400, f"Invalid state {state}: use OPEN, DECLINED, MERGED or ALL")
        order = (request.arg("order") or "NEWEST").upper()
        if order not in ("NEWEST", "OLDEST"):
            raise DcError(400, f"Invalid order {order}: use NEWEST or OLDEST")
        direction = (request.arg("direction") or "INCOMING").upper()
        at = request.arg("at")
        with self.world.lock:
            repo = self._repository(request, "pull_requests")
            render = self._renderer()
            prs = [
                pr
                for pr in repo.pull_requests.values()
                if state == "ALL" or render.pull_request(repo, pr)["state"] == state
            ]
            if at:
                branch = at[len("refs/heads/") :] if at.startswith("refs/heads/") else at
                side = "destination_branch" if direction == "INCOMING" else "source_branch"
                prs = [pr for pr in prs if getattr(pr, side) == branch]
            prs.sort(key=lambda pr: (pr.updated_on, pr.id), reverse=order == "NEWEST")
            return self._page(request, prs, lambda pr: render.pull_request(repo, pr))

    def pull_request_get(self, request: Request) -> Response:
        with self.world.lock:
            repo = self._repository(request, "pull_requests")
            try:
                pr = repo.pull_requests[int(request.params["pr_id"])]
            except (KeyError, ValueError):
                raise DcError(
                    404,
                    f"Pull request {request.params['pr_id']} does not exist in {repo.slug}.",
                    "com.atlassian.bitbucket.pull.NoSuchPullRequestException",
                ) from None
            return Response.json(self._renderer().pull_request(repo, pr))

    def commits_list(self, request: Request) -> Response:
        """``until`` (default: the default branch) back, newest first; ``since`` excluded with
        its ancestors."""
        with self.world.lock:
            repo = self._repository(request, "commits")
            until = request.arg("until") or repo.mainbranch
            if until is None:  # an empty repository
                return self._page(request, [])
            history = repo.history(self._resolve(repo, until).hash)
            since = request.arg("since")
            if since:
                excluded = {c.hash for c in repo.history(self._resolve(repo, since).hash)}
                history = [c for c in history if c.hash not in excluded]
            return self._page(request, history, self._renderer().commit)

    def commit_get(self, request: Request) -> Response:
        with self.world.lock:
            repo = self._repository(request, "commits")
            commit = self._resolve(repo, request.params["commit_id"])
            return Response.json(self._renderer().commit(commit))

    def raw_get(self, request: Request) -> Response:
        with self.world.lock:
            repo = self._repository(request, "files")
            at = request.arg("at") or repo.mainbranch
            path = request.params["path"].strip("/")
            content = None
            if at is not None:
                content = repo.read_file(self._resolve(repo, at), path)
            if content is None:
                raise DcError(
                    404,
                    f'The path "{path}" does not exist at revision "{at}"',
                    "com.atlassian.bitbucket.content.NoSuchPathException",
                )
        try:
            content.decode("utf-8")
            content_type = "text/plain;charset=UTF-8"
        except UnicodeDecodeError:
            content_type = "application/octet-stream"
        return Response(body=content, document=None, content_type=content_type)

    # -- handlers: webhooks --------------------------------------------------------------------

    def _hook_subject(self, request: Request) -> tuple[Project, Repository | None]:
        if "repo_slug" in request.params:
            repo = self._repository(request)
            return self.world.workspaces[self.workspace].projects[repo.project_key], repo
        return self._project(request), None

    def _subject_hooks(self, project: Project, repo: Repository | None) -> list[DcHook]:
        with self._hooks_lock:
            return [
                hook
                for hook in sorted(self.hooks.values(), key=lambda h: h.id)
                if hook.project == project.key and hook.repository == (repo.uuid if repo else None)
            ]

    def _hook(self, request: Request) -> DcHook:
        project, repo = self._hook_subject(request)
        for hook in self._subject_hooks(project, repo):
            if str(hook.id) == request.params["hook_id"]:
                return hook
        raise DcError(
            404,
            f"No webhook with id {request.params['hook_id']} exists.",
            "com.atlassian.webhooks.NoSuchWebhookException",
        )

    @staticmethod
    def _hook_fields(body: Any, *, partial: bool) -> dict:
        if not isinstance(body, dict):
            raise DcError(400, "Expected a JSON object")
        values: dict[str, Any] = {}
        if "name" in body or not partial:
            name = body.get("name")
            if not isinstance(name, str) or not name.strip():
                raise DcError(400, "name: a webhook name is required")
            values["name"] = name
        if "url" in body or not partial:
            url = body.get("url")
            if not isinstance(url, str) or not re.match(r"^https?://[^\s/]+", url):
                raise DcError(400, "url: a valid http(s) URL is required")
            values["url"] = url
        if "events" in body or not partial:
            events = body.get("events")
            if not isinstance(events, list) or not events:
                raise DcError(400, "events: at least one event is required")
            unknown = [event for event in events if event not in WEBHOOK_EVENTS]
            if unknown:
                raise DcError(400, f"events: {unknown[0]} is not a valid webhook event")
            values["events"] = sorted(set(events))
        if "active" in body:
            values["active"] = bool(body["active"])
        configuration = body.get("configuration")
        if isinstance(configuration, dict) and "secret" in configuration:
            values["secret"] = configuration.get("secret") or None
        return values

    def hooks_list(self, request: Request) -> Response:
        event = request.arg("event")
        with self.world.lock:
            project, repo = self._hook_subject(request)
            hooks = [
                hook
                for hook in self._subject_hooks(project, repo)
                if not event or event in hook.events
            ]
            return self._page(request, hooks, DcRenderer.webhook)

    def hook_create(self, request: Request) -> Response:
        values = self._hook_fields(request.json(), partial=False)
        with self.world.lock:
            project, repo = self._hook_subject(request)
            now = self.world.tick()
            with self._hooks_lock:
                self._hook_serial += 1
                hook = DcHook(
                    id=self._hook_serial,
                    name=values["name"],
                    url=values["url"],
                    events=values["events"],
                    active=values.get("active", True),
                    secret=values.get("secret"),
                    created=now,
                    updated=now,
                    project=project.key,
                    repository=repo.uuid if repo else None,
                )
                self.hooks[hook.id] = hook
            return Response.json(DcRenderer.webhook(hook))

    def _hook_json(self, request: Request, hook: DcHook) -> dict:
        return DcRenderer.webhook(hook)

    def _hook_changed(self, hook: DcHook) -> None:
        hook.updated = self.world.tick()

    # -- handlers: OAuth 2.0 (application links) ----------------------------------------------

    def oauth_consent(self, request: Request) -> Response:
        """The consent page a person sees: which application asks for what, as whom, with
        Allow and Deny; the answer is posted back with the request's parameters."""
        credentials = self.world.credentials.dc
        try:
            client = credentials.consent_client(request.arg("client_id", ""))
        except OAuthError as exc:
            return oauth_error_response(exc)
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(key)}" value="{html.escape(value)}">'
            for key, value in request.query
            if key in AUTHORIZE_PARAMS
        )
        scopes = html.escape(request.arg("scope") or " ".join(client.scopes))
        page = CONSENT_PAGE.format(
            client=html.escape(client.client_id),
            user=html.escape(credentials.consent_user()),
            scopes=scopes,
            hidden=hidden,
        )
        return Response.text(page, content_type="text/html; charset=utf-8")

    def oauth_authorize(self, request: Request) -> Response:
        """The consent page's answer (``decision=allow`` or ``deny``): a redirect with a code or
        with ``error=access_denied``. Parameters come from the form, or the query string."""
        values = dict(request.query)
        values.update(parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))
        return oauth_redirect(
            self.world.credentials.dc.authorize,
            client_id=values.get("client_id", ""),
            redirect_uri=values.get("redirect_uri"),
            response_type=values.get("response_type", ""),
            state=values.get("state"),
            code_challenge=values.get("code_challenge", ""),
            code_challenge_method=values.get("code_challenge_method", ""),
            approved=values.get("decision") == "allow",
        )

    def oauth_token(self, request: Request) -> Response:
        """Parameters in the form body or the query string (Atlassian's examples use both);
        the client authenticates with ``client_id``/``client_secret`` or Basic."""
        form = dict(request.query)
        form.update(parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))
        return oauth_token_response(self.world.credentials.dc, request, form)

    # -- /_sandbox/dc ---------------------------------------------------------------------------

    def _control_routes(self) -> list[Route]:
        credentials = self.world.credentials.dc

        def token_add(request: Request) -> Response:
            body = request.json()
            item = credentials.add_token(body.pop("token"), **body)
            return Response.json({"id": item.id, "projects": item.projects}, status=201)

        def client_add(request: Request) -> Response:
            item = credentials.add_client(**request.json())
            return Response.json({"id": item.id, "client_id": item.client_id}, status=201)

        def settings_put(request: Request) -> Response:
            return Response.json(self.configure(**request.json()))

        def oauth_expire(request: Request) -> Response:
            return Response.json({"expired": credentials.expire_access_tokens()})

        def oauth_revoke(request: Request) -> Response:
            revoked = credentials.revoke_client(request.json()["client_id"])
            return Response.json({"revoked": revoked}, status=200 if revoked else 404)

        def token_revoke(request: Request) -> Response:
            revoked = credentials.revoke_token(request.json()["token"])
            return Response.json({"revoked": revoked}, status=200 if revoked else 404)

        table = [
            ("POST", "/dc/tokens", token_add),
            ("POST", "/dc/oauth-clients", client_add),
            ("PUT", "/dc/settings", settings_put),
            ("POST", "/dc/oauth/expire", oauth_expire),
            ("POST", "/dc/oauth/revoke", oauth_revoke),
            ("POST", "/dc/tokens/revoke", token_revoke),
        ]
        return [
            Route(method, CONTROL_PREFIX + path, handler, auth=False)
            for method, path, handler in table
        ]

    # -- webhook deliveries --------------------------------------------------------------------

    def _on_world_event(self, event: WorldEvent) -> None:
        """Runs under the world lock, so the payload describes exactly this change."""
        key = EVENT_KEYS.get(event.kind)
        if key is None or event.workspace != self.workspace:
            return
        repo = event.repository
        with self._hooks_lock:
            hooks = [
                hook
                for hook in self.hooks.values()
                if hook.active
                and key in hook.events
                and hook.project == repo.project_key
                and hook.repository in (None, repo.uuid)
            ]
        if not hooks:
            return
        payload = self._payload(key, event, self._renderer())
        for hook in hooks:
            self.webhooks.send(
                url=hook.url,
                event=key,
                hook_uuid=str(hook.id),
                secret=hook.secret,
                payload=payload,
            )

    def _payload(self, key: str, event: WorldEvent, render: DcRenderer) -> dict:
        repo = event.repository
        payload: dict[str, Any] = {
            "eventKey": key,
            "date": webhook_date(self.world.clock.now()),
            "actor": render.user(event.actor),
        }
        if event.kind == "push":
            payload["repository"] = render.repository(repo)
            payload["changes"] = [render.change(change) for change in event.data["changes"]]
        elif event.kind == "repository.updated":
            new = render.repository(repo)
            old = dict(new)
            for name, change in event.data["changes"].items():
                if name in ("name", "slug", "description"):
                    old[name] = change["old"]
                elif name == "is_private":
                    old["public"] = not change["old"]
            payload.update({"old": old, "new": new})
        else:
            pr = event.data["pullrequest"]
            payload["pullRequest"] = render.pull_request(repo, pr)
            if key in ("pr:reviewer:approved", "pr:reviewer:unapproved"):
                approved = key.endswith(":approved")
                payload["participant"] = {
                    "user": render.user(event.data["user"]),
                    "role": "REVIEWER",
                    "approved": approved,
                    "status": "APPROVED" if approved else "UNAPPROVED",
                }
                payload["previousStatus"] = "UNAPPROVED" if approved else "APPROVED"
            if key == "pr:comment:added":
                comment = event.data["comment"]
                payload["comment"] = {
                    "id": comment["id"],
                    "version": 0,
                    "text": comment["content"],
                    "author": render.user(comment["user"]),
                }
        return payload
