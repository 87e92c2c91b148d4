"""``/_sandbox/...``: the control API for tests and demos driving a sandbox in another process.

JSON in and out, no authentication, loopback callers only. Each endpoint is a thin wrapper over a
world mutation or a traffic setting, so in-process tests can call the same methods directly.
"""

from dataclasses import asdict
from typing import Any, Protocol

from sandbox.query import QueryError
from sandbox.routing import ApiError, Request, Response, Route
from sandbox.traffic import FaultInjector, RateLimiter, RequestLog
from sandbox.webhooks import WebhookSender
from sandbox.world import Conflict, Invalid, NotFound, World, format_time

PREFIX = "/_sandbox"
LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


class ControlledApi(Protocol):
    """What the control API drives of a server (Cloud's or Data Center's)."""

    world: World
    log: RequestLog
    faults: FaultInjector
    rate_limits: RateLimiter
    webhooks: WebhookSender


def _reply(document: Any, status: int = 200) -> Response:
    return Response.json(document, status=status)


def dispatch(route: Route, request: Request) -> Response:
    if request.client not in LOOPBACK:
        return _reply({"error": "The control API only answers loopback callers"}, 403)
    try:
        return route.handler(request)
    except NotFound as exc:
        return _reply({"error": str(exc)}, 404)
    except KeyError as exc:
        return _reply({"error": f"Missing field {exc}"}, 400)
    except Conflict as exc:
        return _reply({"error": str(exc)}, 409)
    except (Invalid, ValueError, TypeError, QueryError) as exc:
        return _reply({"error": str(exc)}, 400)
    except ApiError as exc:
        return _reply({"error": exc.message}, exc.status)


def _account(world: World, value: str | None) -> str | None:
    """An account by uuid, nickname or e-mail (what a test finds handy)."""
    if not value:
        return None
    for account in world.accounts.values():
        if value in (account.uuid, account.nickname, account.email):
            return account.uuid
    raise NotFound(f"No account {value!r}")


def _repo_json(repo) -> dict:
    return {
        "uuid": repo.uuid,
        "workspace": repo.workspace,
        "slug": repo.slug,
        "name": repo.name,
        "mainbranch": repo.mainbranch,
        "branches": dict(repo.branches),
        "updated_on": format_time(repo.updated_on),
    }


def _pr_json(pr) -> dict:
    return {
        "id": pr.id,
        "title": pr.title,
        "state": pr.state,
        "source": pr.source_branch,
        "destination": pr.destination_branch,
        "merge_commit": pr.merge_commit,
        "updated_on": format_time(pr.updated_on),
    }


def _commit_json(commit) -> dict:
    return {"hash": commit.hash, "date": format_time(commit.date), "message": commit.message}


def routes(api: "ControlledApi") -> list[Route]:
    world = api.world
    credentials = world.credentials

    def target(request: Request) -> dict:
        return {"workspace": request.params["workspace"], "slug": request.params["slug"]}

    def pr_target(request: Request) -> dict:
        return {**target(request), "pr_id": int(request.params["pr_id"])}

    # -- world -----------------------------------------------------------------------------

    def world_get(request):
        return _reply(world.summary())

    def world_dump(request):
        return _reply(world.dump())

    def clock_advance(request):
        world.clock.advance(float(request.json().get("advance", 0)))
        return _reply({"now": format_time(world.clock.now())})

    def repository_create(request):
        body = request.json()
        body["actor"] = _account(world, body.get("actor"))
        return _reply(_repo_json(world.repository_create(**body)), 201)

    def repository_update(request):
        body = request.json()
        actor = _account(world, body.pop("actor", None))
        repo = world.repository_update(**target(request), actor=actor, **body)
        return _reply(_repo_json(repo))

    def repository_delete(request):
        world.repository_delete(**target(request))
        return Response(status=204, content_type=None)

    def visibility_put(request):
        """``{"is_private": bool}`` (Cloud's word) or ``{"public": bool}`` (Data Center's)."""
        body = request.json()
        if "is_private" in body:
            private = bool(body["is_private"])
        elif "public" in body:
            private = not body["public"]
        else:
            raise ValueError("Give is_private or public")
        actor = _account(world, body.get("actor"))
        repo = world.repository_set_visibility(**target(request), private=private, actor=actor)
        return _reply({**_repo_json(repo), "is_private": repo.is_private})

    def read_trap_add(request):
        """``{"kind": "pull_requests|commits|files", "action": "delete|forbid", "status"}``."""
        body = request.json()
        with world.lock:
            repo = world.repository(request.params["workspace"], request.params["slug"])
            kind = body.get("kind", "pull_requests")
            action = body.get("action", "forbid")
            if action == "delete":
                world.delete_on_read(repo, kind=kind)
            elif action == "forbid":
                world.forbid(repo, kind=kind, status=int(body.get("status", 403)))
            else:
                raise ValueError("action must be delete or forbid")
            trap = world.read_traps[(repo.uuid, kind)]
        return _reply({"repository": repo.full_name, **asdict(trap)}, 201)

    def read_traps_delete(request):
        cleared = world.read_traps_clear("{workspace}/{slug}".format(**target(request)))
        return _reply({"cleared": cleared})

    def personal_project_create(request):
        body = request.json()
        project = world.personal_project_create(workspace=body["workspace"], user=body["user"])
        return _reply({"key": project.key, "name": project.name, "owner": project.owner}, 201)

    def push(request):
        body = request.json()
        body["actor"] = _account(world, body.get("actor"))
        commits = world.commits_push(**target(request), **body)
        return _reply({"commits": [_commit_json(c) for c in commits]}, 201)

    def file_write(request):
        body = request.json()
        body["actor"] = _account(world, body.get("actor"))
        return _reply(_commit_json(world.file_write(**target(request), **body)), 201)

    def pr_open(request):
        body = request.json()
        body["author"] = _account(world, body.get("author"))
        body["reviewers"] = [_account(world, r) for r in body.get("reviewers", [])]
        return _reply(_pr_json(world.pullrequest_open(**target(request), **body)), 201)

    def pr_update(request):
        body = request.json()
        body["actor"] = _account(world, body.get("actor"))
        return _reply(_pr_json(world.pullrequest_update(**pr_target(request), **body)))

    def pr_merge(request):
        body = request.json()
        body["actor"] = _account(world, body.get("actor"))
        return _reply(_pr_json(world.pullrequest_merge(**pr_target(request), **body)))

    def pr_decline(request):
        body = request.json()
        body["actor"] = _account(world, body.get("actor"))
        return _reply(_pr_json(world.pullrequest_decline(**pr_target(request), **body)))

    def pr_approve(request, approve=True):
        user = _account(world, request.json().get("user"))
        pr = world.pullrequest_approve(**pr_target(request), user=user, approve=approve)
        return _reply(_pr_json(pr))

    def pr_comment(request):
        body = request.json()
        user = _account(world, body.get("user"))
        pr = world.pullrequest_comment(**pr_target(request), content=body["content"], user=user)
        return _reply(_pr_json(pr), 201)

    # -- credentials -----------------------------------------------------------------------

    def settings_get(request):
        return _reply(asdict(credentials.settings))

    def settings_put(request):
        with world.lock:
            for key, value in request.json().items():
                if not hasattr(credentials.settings, key):
                    raise ValueError(f"Unknown setting {key!r}")
                setattr(credentials.settings, key, value)
        return _reply(asdict(credentials.settings))

    def access_token_add(request):
        body = request.json()
        item = credentials.add_access_token(body.pop("token"), **body)
        return _reply({"id": item.id, "kind": item.kind, "scopes": list(item.scopes)}, 201)

    def api_token_add(request):
        item = credentials.add_api_token(**request.json())
        return _reply({"id": item.id, "scopes": list(item.scopes)}, 201)

    def app_password_add(request):
        item = credentials.add_app_password(**request.json())
        return _reply({"id": item.id, "scopes": list(item.scopes)}, 201)

    def consumer_add(request):
        item = credentials.add_oauth_consumer(**request.json())
        return _reply({"id": item.id, "client_id": item.client_id}, 201)

    def oauth_expire(request):
        return _reply({"expired": credentials.expire_access_tokens()})

    def oauth_revoke(request):
        revoked = credentials.revoke_refresh_token(request.json().get("refresh_token", ""))
        return _reply({"revoked": revoked}, 200 if revoked else 404)

    # -- traffic ---------------------------------------------------------------------------

    def faults_get(request):
        return _reply({"config": asdict(api.faults.config), "injected": dict(api.faults.injected)})

    def faults_put(request):
        return _reply({"config": asdict(api.faults.configure(**request.json()))})

    def faults_delete(request):
        api.faults.reset()
        return Response(status=204, content_type=None)

    def limits_get(request):
        return _reply(asdict(api.rate_limits.config))

    def limits_put(request):
        return _reply(asdict(api.rate_limits.configure(**request.json())))

    def limits_delete(request):
        api.rate_limits.reset()
        return Response(status=204, content_type=None)

    def requests_get(request):
        return _reply(api.log.as_json())

    def requests_delete(request):
        api.log.reset()
        return Response(status=204, content_type=None)

    def deliveries_get(request):
        wait = float(request.arg("wait", "0") or 0)
        idle = api.webhooks.wait_idle(wait) if wait else None
        return _reply({"idle": idle, "deliveries": api.webhooks.as_json()})

    def deliveries_delete(request):
        api.webhooks.reset()
        return Response(status=204, content_type=None)

    repo = "/repositories/{workspace}/{slug}"
    pr = f"{repo}/pullrequests/{{pr_id}}"
    table = [
        ("GET", "/world", world_get),
        ("GET", "/world/dump", world_dump),
        ("POST", "/clock", clock_advance),
        ("POST", "/repositories", repository_create),
        ("PATCH", repo, repository_update),
        ("DELETE", repo, repository_delete),
        ("PUT", f"{repo}/visibility", visibility_put),
        ("POST", f"{repo}/read-traps", read_trap_add),
        ("DELETE", f"{repo}/read-traps", read_traps_delete),
        ("POST", "/personal-projects", personal_project_create),
        ("POST", f"{repo}/push", push),
        ("POST", f"{repo}/files", file_write),
        ("POST", f"{repo}/pullrequests", pr_open),
        ("PATCH", pr, pr_update),
        ("POST", f"{pr}/merge", pr_merge),
        ("POST", f"{pr}/decline", pr_decline),
        ("POST", f"{pr}/approve", pr_approve),
        ("POST", f"{pr}/unapprove", lambda request: pr_approve(request, approve=False)),
        ("POST", f"{pr}/comments", pr_comment),
        ("GET", "/settings", settings_get),
        ("PUT", "/settings", settings_put),
        ("POST", "/credentials/access-tokens", access_token_add),
        ("POST", "/credentials/api-tokens", api_token_add),
        ("POST", "/credentials/app-passwords", app_password_add),
        ("POST", "/credentials/oauth-consumers", consumer_add),
        ("POST", "/oauth/expire", oauth_expire),
        ("POST", "/oauth/revoke", oauth_revoke),
        ("GET", "/faults", faults_get),
        ("PUT", "/faults", faults_put),
        ("DELETE", "/faults", faults_delete),
        ("GET", "/rate-limits", limits_get),
        ("PUT", "/rate-limits", limits_put),
        ("DELETE", "/rate-limits", limits_delete),
        ("GET", "/requests", requests_get),
        ("DELETE", "/requests", requests_delete),
        ("GET", "/deliveries", deliveries_get),
        ("DELETE", "/deliveries", deliveries_delete),
    ]
    return [Route(method, PREFIX + path, handler, auth=False) for method, path, handler in table]
