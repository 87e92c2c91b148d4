"""The Bitbucket Cloud REST 2.0 sandbox: the world served the way api.bitbucket.org serves it.

Each request goes through the pipeline shared with Data Center (:class:`SandboxApi` in
``api_base.py``): routing, injected faults, authentication, the rate limit, the scope check, the
handler, then ``fields`` and body faults; everything is recorded in the request log. Handlers
are small functions of a :class:`Request`.
"""

import base64
import hashlib
import re
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime

from sandbox.api_base import SandboxApi, oauth_redirect, oauth_token_response
from sandbox.auth import AuthError
from sandbox.cloud.credentials import Principal, anonymous
from sandbox.cloud.objects import CloudRenderer, content_type
from sandbox.cloud.writes import CloudWrites
from sandbox.control import PREFIX as CONTROL_PREFIX
from sandbox.control import routes as control_routes
from sandbox.query import QueryError, apply_fields, filter_documents, sort_documents
from sandbox.routing import ApiError, PageInfo, Request, Response, Route, Router
from sandbox.traffic import FaultInjector, RateDecision, RateLimiter, RequestLog
from sandbox.webhooks import WebhookSender
from sandbox.world import (
    PR_STATES,
    Conflict,
    Denied,
    Invalid,
    NotFound,
    Repository,
    Workspace,
    World,
    WorldError,
    WorldEvent,
)
from sandbox.writes import WriteFaults, write_control_routes

DEFAULT_PAGELEN = 10
MAX_PAGELEN = 100
PULLREQUEST_MAX_PAGELEN = 50  # observed in 2026: a larger pagelen is a 400, whatever the docs say
RETRY_MARKER = "_sandbox_retry"  # spells a page differently after an injected empty page
RATE_LIMITED = "Rate limit for this resource has been exceeded"
PR_LIST_HIDDEN = ("values.reviewers", "values.participants")
WEBHOOK_EVENTS = frozenset(
    {
        "issue:comment_created",
        "issue:created",
        "issue:updated",
        "project:updated",
        "pullrequest:approved",
        "pullrequest:changes_request_created",
        "pullrequest:changes_request_removed",
        "pullrequest:comment_created",
        "pullrequest:comment_deleted",
        "pullrequest:comment_reopened",
        "pullrequest:comment_resolved",
        "pullrequest:comment_updated",
        "pullrequest:created",
        "pullrequest:fulfilled",
        "pullrequest:rejected",
        "pullrequest:unapproved",
        "pullrequest:updated",
        "repo:commit_comment_created",
        "repo:commit_status_created",
        "repo:commit_status_updated",
        "repo:created",
        "repo:deleted",
        "repo:fork",
        "repo:imported",
        "repo:push",
        "repo:transfer",
        "repo:updated",
    }
)
EVENT_KEYS = {
    "push": "repo:push",
    "repository.created": "repo:created",
    "repository.updated": "repo:updated",
    "repository.deleted": "repo:deleted",
    "pullrequest.created": "pullrequest:created",
    "pullrequest.updated": "pullrequest:updated",
    "pullrequest.merged": "pullrequest:fulfilled",
    "pullrequest.declined": "pullrequest:rejected",
    "pullrequest.approved": "pullrequest:approved",
    "pullrequest.unapproved": "pullrequest:unapproved",
    "pullrequest.comment_created": "pullrequest:comment_created",
}
SRC_META_FIELDS = ("message", "author", "parents", "branch", "files")


@dataclass
class Hook:
    uuid: str
    url: str
    description: str
    events: list[str]
    active: bool
    secret: str | None
    created_at: datetime
    workspace: str  # uuid
    repository: str | None = None  # uuid; None for a workspace hook


class CloudApi(CloudWrites, SandboxApi):
    kind = "cloud"
    hook_key = "uuid"
    handled_errors = (ApiError, WorldError, QueryError)

    def __init__(self, world: World, *, webhook_timeout: float = 10.0):
        self.world = world
        self.log = RequestLog()
        self.faults = FaultInjector()
        self.rate_limits = RateLimiter(now=world.clock.timestamp)
        self.webhooks = WebhookSender(timeout=webhook_timeout)
        self.hooks: dict[str, Hook] = {}
        self.public_url = "http://127.0.0.1"
        self._hooks_lock = threading.Lock()
        self.writes = WriteFaults()
        self.router = Router(
            self._routes()
            + self._write_routes()
            + control_routes(self)
            + write_control_routes(self, CONTROL_PREFIX)
        )
        world.subscribe(self._on_world_event)

    def _routes(self) -> list[Route]:
        repo = "/2.0/repositories/{workspace}/{repo_slug}"
        return [
            Route("GET", "/2.0/user", self.user_get, scope="account"),
            Route("GET", "/2.0/user/emails", self.user_emails, scope="email"),
            Route("GET", "/2.0/workspaces/{workspace}", self.workspace_get),
            Route("GET", "/2.0/workspaces/{workspace}/projects", self.projects_list, "project"),
            Route(
                "GET",
                "/2.0/workspaces/{workspace}/projects/{project_key}",
                self.project_get,
                "project",
            ),
            Route("GET", "/2.0/workspaces/{workspace}/hooks", self.hooks_list, "webhook"),
            Route("POST", "/2.0/workspaces/{workspace}/hooks", self.hook_create, "webhook"),
            Route("GET", "/2.0/workspaces/{workspace}/hooks/{uid}", self.hook_get, "webhook"),
            Route("PUT", "/2.0/workspaces/{workspace}/hooks/{uid}", self.hook_update, "webhook"),
            Route("DELETE", "/2.0/workspaces/{workspace}/hooks/{uid}", self.hook_delete, "webhook"),
            Route(
                "GET",
                "/2.0/repositories/{workspace}",
                self.repositories_list,
                "repository",
                public=True,
            ),
            Route("GET", repo, self.repository_get, "repository", public=True),
            Route(
                "GET", f"{repo}/pullrequests", self.pullrequests_list, "pullrequest", public=True
            ),
            Route(
                "GET",
                f"{repo}/pullrequests/{{pull_request_id}}",
                self.pullrequest_get,
                "pullrequest",
                public=True,
            ),
            Route("GET", f"{repo}/commits", self.commits_list, "repository", public=True),
            Route(
                "GET",
                f"{repo}/commits/{{revision:path}}",  # branch names may hold slashes
                self.commits_list,
                "repository",
                public=True,
            ),
            Route("GET", f"{repo}/commit/{{revision}}", self.commit_get, "repository", public=True),
            Route("GET", f"{repo}/src", self.src_get, "repository", public=True),
            Route("GET", f"{repo}/src/{{commit}}", self.src_get, "repository", public=True),
            Route(
                "GET",
                f"{repo}/src/{{commit}}/{{path:path}}",
                self.src_get,
                "repository",
                public=True,
            ),
            Route("POST", f"{repo}/src", self.src_post, "repository:write"),
            Route("GET", f"{repo}/hooks", self.hooks_list, "webhook"),
            Route("POST", f"{repo}/hooks", self.hook_create, "webhook"),
            Route("GET", f"{repo}/hooks/{{uid}}", self.hook_get, "webhook"),
            Route("PUT", f"{repo}/hooks/{{uid}}", self.hook_update, "webhook"),
            Route("DELETE", f"{repo}/hooks/{{uid}}", self.hook_delete, "webhook"),
            Route("GET", "/site/oauth2/authorize", self.oauth_authorize, auth=False),
            Route("POST", "/site/oauth2/access_token", self.oauth_token, auth=False),
        ]

    # -- the pipeline (see SandboxApi): Cloud's errors, throttling, credentials and scopes --------

    def _fault_eligible(self, request: Request) -> bool:
        return super()._fault_eligible(request) and request.arg(RETRY_MARKER) is None

    def _api_error(self, exc: Exception) -> ApiError:
        return exc if isinstance(exc, ApiError) else _world_error(exc)

    def _server_error(self) -> ApiError:
        return ApiError(500, "Something went wrong")

    def _auth_failure(self, exc: AuthError) -> ApiError:
        return _unauthorized(exc.message, exc.detail)

    def _throttled(self, retry_after: int | None) -> Response:
        response = Response.text(RATE_LIMITED, status=429)
        if retry_after is not None:
            response.headers["Retry-After"] = str(retry_after)
        return response

    def _shape(self, request: Request, response: Response, eligible: bool, outcome) -> None:
        """``fields`` and default omissions, then the faults that act on a good JSON body."""
        fields = request.arg("fields")
        if fields or response.default_excluded:
            try:
                response.document = apply_fields(
                    response.document, fields, default_excluded=response.default_excluded
                )
            except QueryError as exc:
                outcome.response = Response.error(ApiError(400, str(exc)))
                return
        super()._shape(request, response, eligible, outcome)

    def _authenticate(self, request: Request, route: Route) -> Principal:
        header = request.headers.get("Authorization")
        if not header and request.arg("access_token"):
            header = f"Bearer {request.arg('access_token')}"  # RFC 6750 query form
        principal = self.world.credentials.authenticate(header)
        if principal is not None:
            return principal
        if route.public and request.method == "GET":
            return anonymous(request.client)
        raise _unauthorized("Unauthorized", "This API requires authentication.")

    def _rate_resource(self, request: Request) -> str | None:
        if request.principal.anonymous:
            return "anonymous"
        if request.route.handler == self.src_get:
            return "raw"
        if request.path.startswith("/2.0/repositories/"):
            return "api-repositories"
        return None

    def _rate_headers(self, principal: Principal, decision: RateDecision) -> dict[str, str]:
        if not principal.is_access_token or decision.limit is None:
            return {}
        return {
            "X-RateLimit-Limit": str(decision.limit),
            "X-RateLimit-Resource": decision.resource,
            "X-RateLimit-NearLimit": str(self.rate_limits.is_near(decision)).lower(),
        }

    @staticmethod
    def _check_scope(principal: Principal, scope: str | None) -> None:
        if principal.has_scope(scope):
            return
        granted = ", ".join(principal.granted) or "none"
        raise ApiError(
            403,
            f"Your credentials lack one or more required privilege scopes: {scope}.",
            f"This endpoint requires the scope {scope}; granted: {granted}.",
            data={"required": [scope], "granted": list(principal.granted)},
        )

    # -- lookups -------------------------------------------------------------------------------

    def _renderer(self, request: Request) -> CloudRenderer:
        return CloudRenderer(self.world, request.base_url)

    @staticmethod
    def _hidden(principal: Principal, message: str) -> ApiError:
        """Invisible things do not exist (404), except that anonymous callers are asked to log
        in, as Bitbucket does for private repositories."""
        if principal.anonymous:
            return _unauthorized("Unauthorized", "This resource requires authentication.")
        return ApiError(404, message)

    def _workspace(self, request: Request) -> Workspace:
        key = request.params["workspace"]
        ws = self.world.workspace(key)
        if not request.principal.sees_workspace(ws):
            raise self._hidden(request.principal, f"No workspace with identifier '{key}'.")
        return ws

    def _repository(self, request: Request, kind: str | None = None) -> Repository:
        """The repository a request names; reading its ``kind`` (pull requests, commits,
        files) springs the world's read trap, if any (see ``World.read_check``)."""
        workspace, slug = request.params["workspace"], request.params["repo_slug"]
        repo = self.world.repository(workspace, slug)
        ws = self.world.workspaces[repo.workspace]
        if not request.principal.sees_repository(ws, repo):
            raise self._hidden(request.principal, f"Repository {workspace}/{slug} not found")
        if kind is not None:
            self.world.read_check(repo, kind)
        return repo

    # -- pagination ----------------------------------------------------------------------------

    @staticmethod
    def _pagelen(request: Request, maximum: int) -> int:
        raw = request.arg("pagelen")
        if raw is None:
            return DEFAULT_PAGELEN
        try:
            pagelen = int(raw)
        except ValueError:
            raise ApiError(400, "Invalid pagelen") from None
        if not 1 <= pagelen <= maximum:
            raise ApiError(400, "Invalid pagelen", f"pagelen must be between 1 and {maximum}")
        return pagelen

    @staticmethod
    def _page_links(request: Request):
        """Links keep the request's own parameters, in order, with ``page`` last — so a page's
        URL is spelled identically by whichever page links to it."""
        base = [(k, v) for k, v in request.query if k not in ("page", RETRY_MARKER)]

        def url(page: str, *extra: tuple[str, str]) -> str:
            return request.url(request.path, [*base, ("page", page), *extra])

        return url

    @staticmethod
    def _page_info(request: Request, url, page: str) -> PageInfo:
        return PageInfo(
            self_url=url(page),
            retry_url=url(page, (RETRY_MARKER, "1")),
            continuation=request.arg("page") is not None,
        )

    def _paginate(
        self,
        request: Request,
        items: list,
        render=None,
        *,
        maximum: int = MAX_PAGELEN,
        default_excluded: tuple[str, ...] = (),
    ) -> Response:
        """Numbered pages: ``size``, ``page``, ``pagelen``, ``next``, ``previous``, ``values``.

        ``items`` in their default order, ``render`` turning one into its JSON. ``q`` and
        ``sort`` work on the JSON, so with either every item is rendered; without, only the page
        is (call under the world lock)."""
        render = render or (lambda item: item)
        pagelen = self._pagelen(request, maximum)
        try:
            page = int(request.arg("page", "1"))
        except ValueError:
            raise ApiError(400, "Invalid page") from None
        if page < 1:
            raise ApiError(400, "Invalid page")
        start = (page - 1) * pagelen
        q, sort = request.arg("q"), request.arg("sort")
        if q or sort:
            documents = [render(item) for item in items]
            documents = sort_documents(filter_documents(documents, q), sort)
            total, values = len(documents), documents[start : start + pagelen]
        else:
            total = len(items)
            values = [render(item) for item in items[start : start + pagelen]]
        url = self._page_links(request)
        info = self._page_info(request, url, str(page))
        envelope: dict = {"size": total, "page": page, "pagelen": pagelen, "values": values}
        if start + pagelen < total:
            envelope["next"] = url(str(page + 1))
        if page > 1:
            envelope["previous"] = url(str(page - 1))
        return Response.json(envelope, default_excluded=default_excluded, page=info)

    # -- handlers: account, workspaces, projects -----------------------------------------------

    def user_get(self, request: Request) -> Response:
        return Response.json(self._renderer(request).user(request.principal.account))

    def user_emails(self, request: Request) -> Response:
        """What django-allauth's Bitbucket provider reads after the OAuth dance."""
        account = self.world.account(request.principal.account)
        emails = [] if account is None or account.kind == "bot" else [account.email]
        return self._paginate(
            request,
            [
                {"type": "email", "email": e, "is_primary": True, "is_confirmed": True}
                for e in emails
            ],
        )

    def workspace_get(self, request: Request) -> Response:
        return Response.json(self._renderer(request).workspace(self._workspace(request)))

    def _projects(self, request: Request, ws: Workspace):
        principal = request.principal
        for project in ws.projects.values():
            if principal.project is None or principal.project == project.key:
                if principal.repository is None:
                    yield project

    def projects_list(self, request: Request) -> Response:
        with self.world.lock:
            ws = self._workspace(request)
            render = self._renderer(request)
            projects = sorted(self._projects(request, ws), key=lambda p: p.key)
            return self._paginate(request, projects, lambda p: render.project(ws, p))

    def project_get(self, request: Request) -> Response:
        with self.world.lock:
            ws = self._workspace(request)
            key = request.params["project_key"]
            project = next((p for p in self._projects(request, ws) if p.key == key), None)
            if project is None:
                raise ApiError(404, f"Project {key} not found")
            return Response.json(self._renderer(request).project(ws, project))

    # -- handlers: repositories ----------------------------------------------------------------

    def repositories_list(self, request: Request) -> Response:
        with self.world.lock:
            ws = self._workspace(request)
            render = self._renderer(request)
            repos = [
                r for r in ws.repositories.values() if request.principal.sees_repository(ws, r)
            ]
            repos.sort(key=lambda r: (r.created_on, r.uuid))
            return self._paginate(request, repos, render.repository)

    def repository_get(self, request: Request) -> Response:
        with self.world.lock:
            return Response.json(self._renderer(request).repository(self._repository(request)))

    # -- handlers: pull requests ---------------------------------------------------------------

    def pullrequests_list(self, request: Request) -> Response:
        """Only OPEN by default; ``state`` repeats. A ``q`` that names ``state`` replaces the
        default (a tolerance: Bitbucket's interplay of the two is not documented)."""
        states = [s.upper() for s in request.args("state")]
        unknown = [s for s in states if s not in PR_STATES]
        if unknown:
            raise ApiError(400, f"Invalid state: {unknown[0]}", f"Valid: {', '.join(PR_STATES)}")
        if not states and not re.search(r"\bstate\b", request.arg("q") or ""):
            states = ["OPEN"]
        with self.world.lock:
            repo = self._repository(request, "pull_requests")
            render = self._renderer(request)
            prs = sorted(repo.pull_requests.values(), key=lambda pr: pr.id, reverse=True)
            return self._paginate(
                request,
                [pr for pr in prs if not states or pr.state in states],
                lambda pr: render.pullrequest(repo, pr),
                maximum=PULLREQUEST_MAX_PAGELEN,
                default_excluded=PR_LIST_HIDDEN,
            )

    def pullrequest_get(self, request: Request) -> Response:
        with self.world.lock:
            repo = self._repository(request, "pull_requests")
            pr = self.world.pull_request(repo, request.params["pull_request_id"])
            return Response.json(self._renderer(request).pullrequest(repo, pr))

    # -- handlers: commits ---------------------------------------------------------------------

    @staticmethod
    def _commit_token(start: str, offset: int) -> str:
        return base64.urlsafe_b64encode(f"{start}:{offset}".encode()).decode().rstrip("=")

    @staticmethod
    def _read_commit_token(token: str) -> tuple[str, int]:
        try:
            padded = token + "=" * (-len(token) % 4)
            start, _, offset = base64.urlsafe_b64decode(padded).decode().partition(":")
            return start, int(offset)
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "Invalid page") from None

    def commits_list(self, request: Request) -> Response:
        """Iterator pages: only ``pagelen``, ``values`` and an opaque ``next``. The token pins
        the tip the walk started from, so pushes during paging do not shift it."""
        pagelen = self._pagelen(request, MAX_PAGELEN)
        token = request.arg("page")
        with self.world.lock:
            repo = self._repository(request, "commits")
            revision = request.params.get("revision")
            if token:
                start, offset = self._read_commit_token(token)
            else:
                offset = 0
                if revision:
                    commit = repo.resolve(revision)
                    if commit is None:
                        raise ApiError(404, f"Commit not found: {revision}")
                    start = commit.hash
                else:
                    start = "*"
            history = repo.history(*repo.branches.values()) if start == "*" else repo.history(start)
            render = self._renderer(request)
            values = [render.commit(repo, c) for c in history[offset : offset + pagelen]]
        url = self._page_links(request)
        info = self._page_info(request, url, token or self._commit_token(start, offset))
        document: dict = {"pagelen": pagelen, "values": values}
        if offset + pagelen < len(history):
            document["next"] = url(self._commit_token(start, offset + pagelen))
        return Response.json(document, page=info)

    def commit_get(self, request: Request) -> Response:
        with self.world.lock:
            repo = self._repository(request, "commits")
            commit = repo.resolve(request.params["revision"])
            if commit is None:
                raise ApiError(404, f"Commit not found: {request.params['revision']}")
            return Response.json(self._renderer(request).commit(repo, commit))

    # -- handlers: source ----------------------------------------------------------------------

    def src_get(self, request: Request) -> Response:
        """A file's raw bytes (content type from the extension), ``format=meta`` for its
        ``commit_file``, or a directory listing."""
        with self.world.lock:
            repo = self._repository(request, "files")
            revision = request.params.get("commit") or repo.mainbranch
            commit = repo.resolve(revision) if revision else None
            if commit is None:
                raise ApiError(404, f"Commit not found: {revision}")
            path = request.params.get("path", "").strip("/")
            render = self._renderer(request)
            meta = request.arg("format") == "meta"
            content = repo.read_file(commit, path) if path else None
            if content is not None:
                if meta:
                    return Response.json(render.commit_file(repo, commit, path, len(content)))
                return Response(
                    body=content,
                    document=None,
                    content_type=content_type(path),
                    headers={
                        "ETag": f'"{hashlib.sha1(content, usedforsecurity=False).hexdigest()}"',
                        "Content-Disposition": f'attachment; filename="{path.rsplit("/", 1)[-1]}"',
                    },
                )
            prefix = f"{path}/" if path else ""
            tree = repo.tree(commit)
            children = sorted(
                {p[len(prefix) :].split("/", 1)[0] for p in tree if p.startswith(prefix)}
            )
            if not children:
                raise ApiError(404, f"No such file or directory: {path}")
            if meta:
                return Response.json(render.commit_directory(repo, commit, path))
            documents = []
            for name in children:
                child = f"{prefix}{name}"
                if child in tree:
                    documents.append(render.commit_file(repo, commit, child, len(tree[child])))
                else:
                    documents.append(render.commit_directory(repo, commit, child))
        return self._paginate(request, documents)

    def src_post(self, request: Request) -> Response:
        """A commit from form fields named by path; ``parents`` that is not the branch tip is a
        409, so a client re-reads the tip and retries."""
        files: dict[str, bytes | None] = {}
        meta: dict[str, list[str]] = {name: [] for name in SRC_META_FIELDS}
        for item in request.form():
            if item.filename is None and not item.name.startswith("/") and item.name in meta:
                meta[item.name].append(item.value.decode("utf-8", "replace"))
            else:
                files[item.name.lstrip("/")] = item.value
        for path in meta["files"]:
            files.setdefault(path.lstrip("/"), None)
        if not files:
            raise ApiError(400, "Bad request", "No files to commit")
        parents = [p.strip() for value in meta["parents"] for p in value.split(",") if p.strip()]
        with self.world.lock:
            repo = self._repository(request)
            self._commit_conflict(request, repo, (meta["branch"] or [None])[-1])
            commit = self.world.commit_create(
                workspace=repo.workspace,
                slug=repo.slug,
                files=files,
                branch=(meta["branch"] or [None])[-1],
                message=(meta["message"] or ["Edited online with Bitbucket"])[-1],
                author=(meta["author"] or [None])[-1],
                parents=parents,
                actor=request.principal.account,
            )
            location = f"{request.base_url}/2.0/repositories/{repo.full_name}/commit/{commit.hash}"
        return Response(status=201, content_type=None, headers={"Location": location})

    # -- handlers: webhooks --------------------------------------------------------------------

    def _hook_subject(self, request: Request) -> tuple[Workspace, Repository | None]:
        if "repo_slug" in request.params:
            repo = self._repository(request)
            return self.world.workspaces[repo.workspace], repo
        ws = self._workspace(request)
        principal = request.principal
        if principal.project is not None or principal.repository is not None:
            raise ApiError(403, "Forbidden", "Workspace webhooks need workspace-wide access.")
        return ws, None

    def _subject_hooks(self, ws: Workspace, repo: Repository | None) -> list[Hook]:
        with self._hooks_lock:
            return [
                h
                for h in self.hooks.values()
                if h.workspace == ws.uuid and h.repository == (repo.uuid if repo else None)
            ]

    def _hook(self, request: Request) -> Hook:
        ws, repo = self._hook_subject(request)
        uid = request.params["uid"]
        for hook in self._subject_hooks(ws, repo):
            if hook.uuid == uid or hook.uuid.strip("{}") == uid.strip("{}"):
                return hook
        raise ApiError(404, f"Webhook {uid} not found")

    def hooks_list(self, request: Request) -> Response:
        with self.world.lock:
            ws, repo = self._hook_subject(request)
            render = self._renderer(request)
            hooks = sorted(self._subject_hooks(ws, repo), key=lambda h: h.created_at)
            documents = [render.hook(h) for h in hooks]
        return self._paginate(request, documents)

    @staticmethod
    def _hook_fields(body: dict, *, partial: bool) -> dict:
        if not isinstance(body, dict):
            raise ApiError(400, "Bad request", "Expected a JSON object")
        values: dict = {}
        if "url" in body or not partial:
            url = body.get("url")
            if not isinstance(url, str) or not re.match(r"^https?://[^\s/]+", url):
                raise ApiError(400, "Bad request", "url: a valid http(s) URL is required")
            values["url"] = url
        if "events" in body or not partial:
            events = body.get("events")
            if not isinstance(events, list) or not events:
                raise ApiError(400, "Bad request", "events: at least one event is required")
            unknown = [e for e in events if e not in WEBHOOK_EVENTS]
            if unknown:
                raise ApiError(400, "Bad request", f"events: unknown event {unknown[0]!r}")
            values["events"] = sorted(set(events))
        if "description" in body:
            values["description"] = str(body.get("description") or "")
        if "active" in body:
            values["active"] = bool(body["active"])
        if "secret" in body:
            secret = body.get("secret") or None
            if secret is not None and (not isinstance(secret, str) or len(secret) > 128):
                raise ApiError(400, "Bad request", "secret: at most 128 characters")
            values["secret"] = secret
        return values

    def hook_create(self, request: Request) -> Response:
        values = self._hook_fields(request.json(), partial=False)
        with self.world.lock:
            ws, repo = self._hook_subject(request)
            hook = Hook(
                uuid="{" + str(uuid.uuid4()) + "}",
                url=values["url"],
                description=values.get("description", ""),
                events=values["events"],
                active=values.get("active", True),
                secret=values.get("secret"),
                created_at=self.world.tick(),
                workspace=ws.uuid,
                repository=repo.uuid if repo else None,
            )
            with self._hooks_lock:
                self.hooks[hook.uuid] = hook
            return Response.json(self._renderer(request).hook(hook), status=201)

    def _hook_json(self, request: Request, hook: Hook) -> dict:
        return self._renderer(request).hook(hook)

    # -- handlers: OAuth 2 ---------------------------------------------------------------------

    def oauth_authorize(self, request: Request) -> Response:
        return oauth_redirect(
            self.world.credentials.authorize,
            client_id=request.arg("client_id", ""),
            response_type=request.arg("response_type", ""),
            state=request.arg("state"),
            redirect_uri=request.arg("redirect_uri"),
        )

    def oauth_token(self, request: Request) -> Response:
        form = {item.name: item.value.decode("utf-8", "replace") for item in request.form()}
        return oauth_token_response(self.world.credentials, request, form)

    # -- webhook deliveries --------------------------------------------------------------------

    def _on_world_event(self, event: WorldEvent) -> None:
        """Runs under the world lock, so the payload describes exactly this change."""
        key = EVENT_KEYS.get(event.kind)
        if key is None:
            return
        ws = self.world.workspaces.get(event.workspace)
        if ws is None:
            return
        with self._hooks_lock:
            hooks = [
                h
                for h in self.hooks.values()
                if h.active
                and key in h.events
                and h.workspace == ws.uuid
                and h.repository in (None, event.repository.uuid)
            ]
        if not hooks:
            return
        payload = self._payload(event, CloudRenderer(self.world, self.public_url))
        for hook in hooks:
            self.webhooks.send(
                url=hook.url, event=key, hook_uuid=hook.uuid, secret=hook.secret, payload=payload
            )

    def _payload(self, event: WorldEvent, render: CloudRenderer) -> dict:
        repo = event.repository
        payload: dict = {
            "actor": render.account(event.actor),
            "repository": render.hook_repository(repo),
        }
        if event.kind == "push":
            changes = [render.push_change(repo, change) for change in event.data["changes"]]
            payload["push"] = {"changes": changes}
        elif event.kind == "repository.updated":
            payload["changes"] = event.data["changes"]
        elif event.kind.startswith("pullrequest."):
            pr = event.data["pullrequest"]
            payload["pullrequest"] = render.pullrequest(repo, pr)
            if event.kind in ("pullrequest.approved", "pullrequest.unapproved"):
                payload["approval"] = {
                    "date": event.data["date"].isoformat(),
                    "user": render.account(event.data["user"]),
                }
            if event.kind == "pullrequest.comment_created":
                comment = event.data["comment"]
                payload["comment"] = {
                    "type": "pullrequest_comment",
                    "id": comment["id"],
                    "content": {"raw": comment["content"], "markup": "markdown"},
                    "user": render.account(comment["user"]),
                }
        return payload


def _unauthorized(message: str, detail: str = "") -> ApiError:
    return ApiError(
        401,
        message,
        detail or None,
        headers={"WWW-Authenticate": 'Basic realm="Bitbucket.org HTTP"'},
    )


def _world_error(exc: Exception) -> ApiError:
    if isinstance(exc, Denied):
        # What api.bitbucket.org answers when a permission stops short of the resource [guess:
        # the message varies by cause; the shape is the documented error object].
        message = {403: "Forbidden", 404: "Not found", 410: "Gone"}.get(exc.status, str(exc))
        return ApiError(exc.status, message, str(exc))
    if isinstance(exc, NotFound):
        return ApiError(404, str(exc))
    if isinstance(exc, Conflict):
        return ApiError(409, "Conflict", str(exc))
    if isinstance(exc, Invalid | QueryError):
        return ApiError(400, str(exc) if isinstance(exc, QueryError) else "Bad request", str(exc))
    return ApiError(400, "Bad request", str(exc))
