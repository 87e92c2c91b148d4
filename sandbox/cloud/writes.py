"""Bitbucket Cloud's write endpoints for write-back: branches (``/refs/branches``), pull requests
created, merged and declined through the API, and the conflict knob of ``POST /src``.

Scopes are those the spec's security sections name: ``repository`` to read branches,
``repository:write`` to create one (and to commit, ``POST /src``), ``pullrequest:write`` to
create, merge or decline a pull request; a token without them gets the 403 naming the scope.
"""

from typing import Any

from sandbox.routing import ApiError, Request, Response, Route
from sandbox.world import Conflict, PullRequest, Repository
from sandbox.writes import WriteFaults, concurrent_commit

MERGE_STRATEGIES = ["merge_commit", "squash", "fast_forward"]


def _field_error(field: str, reason: str) -> ApiError:
    """A 400 naming the field, with Bitbucket's ``fields`` detail [guess: its exact layout]."""
    return ApiError(400, f"{field}: {reason}", reason, data={"fields": {field: [reason]}})


def _branch_name(body: Any, side: str) -> str | None:
    value = body.get(side) if isinstance(body, dict) else None
    branch = value.get("branch") if isinstance(value, dict) else None
    name = branch.get("name") if isinstance(branch, dict) else None
    return name if isinstance(name, str) and name.strip() else None


class CloudWrites:
    """Mixed into :class:`~sandbox.cloud.api.CloudApi` (which supplies the lookups, renderer
    and paging); ``writes`` holds the conflict knobs."""

    writes: WriteFaults

    def _write_routes(self) -> list[Route]:
        repo = "/2.0/repositories/{workspace}/{repo_slug}"
        pr = f"{repo}/pullrequests/{{pull_request_id}}"
        return [
            Route("GET", f"{repo}/refs/branches", self.branches_list, "repository", public=True),
            Route("POST", f"{repo}/refs/branches", self.branch_create, "repository:write"),
            Route(
                "GET",
                f"{repo}/refs/branches/{{name:path}}",
                self.branch_get,
                "repository",
                public=True,
            ),
            Route("POST", f"{repo}/pullrequests", self.pullrequest_create, "pullrequest:write"),
            Route("POST", f"{pr}/merge", self.pullrequest_merge, "pullrequest:write"),
            Route("POST", f"{pr}/decline", self.pullrequest_decline, "pullrequest:write"),
        ]

    # -- branches ------------------------------------------------------------------------------

    def _branch_json(self, request: Request, repo: Repository, name: str) -> dict:
        render = self._renderer(request)
        api = f"{request.base_url}/2.0/repositories/{repo.full_name}"
        return {
            "type": "branch",
            "name": name,
            "target": render.commit(repo, repo.commits[repo.branches[name]]),
            "links": {
                "self": {"href": f"{api}/refs/branches/{name}"},
                "commits": {"href": f"{api}/commits/{name}"},
                "html": {"href": f"{render.web}/{repo.full_name}/branch/{name}"},
            },
            "merge_strategies": list(MERGE_STRATEGIES),
            "default_merge_strategy": "merge_commit",
        }

    def branches_list(self, request: Request) -> Response:
        with self.world.lock:
            repo = self._repository(request)
            documents = [self._branch_json(request, repo, name) for name in sorted(repo.branches)]
        return self._paginate(request, documents)

    def branch_get(self, request: Request) -> Response:
        with self.world.lock:
            repo = self._repository(request)
            name = request.params["name"]
            if name not in repo.branches:
                raise ApiError(404, f"Branch not found: {name}")
            return Response.json(self._branch_json(request, repo, name))

    def branch_create(self, request: Request) -> Response:
        """``{"name", "target": {"hash"}}``; the hash may be a branch name or a short hash."""
        body = request.json()
        name = body.get("name") if isinstance(body, dict) else None
        target = body.get("target") if isinstance(body, dict) else None
        revision = target.get("hash") if isinstance(target, dict) else None
        if not isinstance(name, str) or not name.strip():
            raise _field_error("name", "A branch name is required.")
        if name.startswith("refs/"):
            raise _field_error("name", "The branch name must not include a refs/ prefix.")
        if not isinstance(revision, str) or not revision.strip():
            raise _field_error("target.hash", "A target commit is required.")
        with self.world.lock:
            repo = self._repository(request)
            if name in repo.branches:
                raise _field_error("name", f"Branch {name} already exists.")
            commit = repo.resolve(revision)
            if commit is None:
                raise _field_error("target.hash", f"Commit {revision} not found.")
            self.world.branch_create(
                workspace=repo.workspace,
                slug=repo.slug,
                branch=name,
                target=commit.hash,
                actor=request.principal.account,
            )
            document = self._branch_json(request, repo, name)
        return Response.json(
            document, status=201, headers={"Location": document["links"]["self"]["href"]}
        )

    # -- commits: the conflict knob of POST /src -----------------------------------------------

    def _commit_conflict(self, request: Request, repo: Repository, branch: str | None) -> None:
        """When armed, someone else commits to the branch first and the write answers the 409
        a stale ``parents`` gets, whatever the request said."""
        if not self.writes.take("commit"):
            return
        target = branch if branch in repo.branches else repo.mainbranch
        if target is None:
            raise Conflict("The repository changed during the commit; retry")
        commit = concurrent_commit(self.world, repo, target, request.principal.account)
        raise Conflict(f"The branch {target} moved to {commit.hash[:12]}; re-read its tip")

    # -- pull requests -------------------------------------------------------------------------

    def _reviewers(self, body: dict) -> list[str]:
        reviewers = body.get("reviewers") or []
        if not isinstance(reviewers, list):
            raise _field_error("reviewers", "Expected a list of users.")
        found = []
        for item in reviewers:
            key = None
            if isinstance(item, dict):
                key = item.get("uuid") or item.get("account_id") or item.get("nickname")
            account = next(
                (
                    a
                    for a in self.world.accounts.values()
                    if key and key in (a.uuid, a.account_id, a.nickname)
                ),
                None,
            )
            if account is None:
                raise _field_error("reviewers", f"No such user: {key or item!r}.")
            found.append(account.uuid)
        return found

    def pullrequest_create(self, request: Request) -> Response:
        body = request.json()
        if not isinstance(body, dict):
            raise ApiError(400, "Bad request", "Expected a JSON object")
        title = body.get("title")
        if not isinstance(title, str) or not title.strip():
            raise _field_error("title", "This field is required.")
        source = _branch_name(body, "source")
        if source is None:
            raise _field_error("source", "A source branch name is required.")
        with self.world.lock:
            repo = self._repository(request, "pull_requests")
            destination = _branch_name(body, "destination") or repo.mainbranch
            if source not in repo.branches:
                raise _field_error("source", f"Branch {source} not found.")
            if destination not in repo.branches:
                raise _field_error("destination", f"Branch {destination} not found.")
            if source == destination:
                raise _field_error("source", "The source and destination branches are the same.")
            reviewers = self._reviewers(body)
            pr = self.world.pullrequest_open(
                workspace=repo.workspace,
                slug=repo.slug,
                title=title,
                source=source,
                destination=destination,
                description=str(body.get("description") or ""),
                author=request.principal.account,
                reviewers=reviewers,
                close_source_branch=bool(body.get("close_source_branch", False)),
            )
            document = self._renderer(request).pullrequest(repo, pr)
        return Response.json(
            document, status=201, headers={"Location": document["links"]["self"]["href"]}
        )

    def _pr(self, request: Request) -> tuple[Repository, PullRequest]:
        repo = self._repository(request, "pull_requests")
        return repo, self.world.pull_request(repo, request.params["pull_request_id"])

    def pullrequest_merge(self, request: Request) -> Response:
        body = request.json()
        body = body if isinstance(body, dict) else {}
        strategy = body.get("merge_strategy", "merge_commit")
        if strategy not in MERGE_STRATEGIES:
            raise _field_error("merge_strategy", f"Unknown merge strategy {strategy!r}.")
        with self.world.lock:
            repo, pr = self._pr(request)
            close = body.get("close_source_branch")
            pr = self.world.pullrequest_merge(
                workspace=repo.workspace,
                slug=repo.slug,
                pr_id=pr.id,
                message=body.get("message") or None,
                close_source_branch=None if close is None else bool(close),
                actor=request.principal.account,
            )
            return Response.json(self._renderer(request).pullrequest(repo, pr))

    def pullrequest_decline(self, request: Request) -> Response:
        with self.world.lock:
            repo, pr = self._pr(request)
            pr = self.world.pullrequest_decline(
                workspace=repo.workspace,
                slug=repo.slug,
                pr_id=pr.id,
                actor=request.principal.account,
            )
            return Response.json(self._renderer(request).pullrequest(repo, pr))
