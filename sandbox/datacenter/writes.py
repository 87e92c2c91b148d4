"""Bitbucket Data Center's write endpoints for write-back: branches listed and created (the REST
``/branches`` resource and ``branch-utils``), pull requests created, merged and declined.

Permissions as the 9.4 spec states them: creating a pull request needs REPO_READ on both refs;
creating a branch or merging needs REPO_WRITE; a caller without it gets Data Center's 401 naming
the permission. A duplicate open pull request is the 409 Data Center answers, with the existing
one in the error (as real instances send it [seen]).
"""

from typing import Any

from sandbox.datacenter.credentials import DcPrincipal
from sandbox.datacenter.git import can_write
from sandbox.routing import Request, Response, Route
from sandbox.world import PullRequest, Repository

BRANCH_UTILS = ("/rest/branch-utils/1.0", "/rest/branch-utils/latest")
PR_EXCEPTION = "com.atlassian.bitbucket.pull."


def _dc_error(*args, **kwargs):
    from sandbox.datacenter.api import DcError

    return DcError(*args, **kwargs)


def _branch(ref: Any) -> str | None:
    """``refs/heads/x`` or ``x`` from a ref object (``{"id": ...}``) or a string."""
    value = ref.get("id") if isinstance(ref, dict) else ref
    if not isinstance(value, str) or not value.strip():
        return None
    return value[len("refs/heads/") :] if value.startswith("refs/heads/") else value


class DcWrites:
    """Mixed into :class:`~sandbox.datacenter.api.DataCenterApi`, which supplies the lookups,
    paging, renderer, ``writes`` (the conflict knobs) and ``git`` (the mirrors)."""

    def _write_routes(self, api: str) -> list[Route]:
        repo = f"{api}/projects/{{project_key}}/repos/{{repo_slug}}"
        pr = f"{repo}/pull-requests/{{pr_id}}"
        routes = [
            Route("GET", f"{repo}/branches", self.branches_list),
            Route("POST", f"{repo}/branches", self.branch_create),
            Route("POST", f"{repo}/pull-requests", self.pull_request_create),
            Route("POST", f"{pr}/merge", self.pull_request_merge),
            Route("POST", f"{pr}/decline", self.pull_request_decline),
        ]
        for base in BRANCH_UTILS:
            path = f"{base}/projects/{{project_key}}/repos/{{repo_slug}}/branches"
            routes.append(Route("POST", path, self.branch_create))
        return routes

    def _require_write(self, principal: DcPrincipal, repo: Repository, action: str) -> None:
        if not can_write(principal):
            raise _dc_error(
                401,
                f"You need REPO_WRITE permission on {repo.project_key}/{repo.slug} to {action}.",
                "com.atlassian.bitbucket.AuthorisationException",
            )

    def _git_sync(self, repo: Repository) -> None:
        """New world commits take their git ids at once when the repository has a mirror."""
        if repo.uuid in self.git.mirrors:
            self.git.mirror(repo)

    # -- branches ------------------------------------------------------------------------------

    def branches_list(self, request: Request) -> Response:
        """``filterText`` (substring), ``orderBy`` ALPHABETICAL (default here) or MODIFICATION."""
        text = (request.arg("filterText") or "").lower()
        order = (request.arg("orderBy") or "ALPHABETICAL").upper()
        if order not in ("ALPHABETICAL", "MODIFICATION"):
            raise _dc_error(400, f"orderBy: {order} is not ALPHABETICAL or MODIFICATION")
        with self.world.lock:
            repo = self._repository(request)
            names = [name for name in sorted(repo.branches) if text in name.lower()]
            if order == "MODIFICATION":
                names.sort(key=lambda n: repo.commits[repo.branches[n]].date, reverse=True)
            branches = [
                self._renderer().branch(n, repo.branches[n], default=n == repo.mainbranch)
                for n in names
            ]
            return self._page(request, branches)

    def branch_create(self, request: Request) -> Response:
        """``{"name", "startPoint"}`` (a branch or a commit id): 200 on the REST resource, 201
        on ``branch-utils``; an existing name is a 400, one overlapping a branch a 409."""
        body = request.json()
        body = body if isinstance(body, dict) else {}
        name = _branch(body.get("name"))
        start = _branch(body.get("startPoint"))
        if name is None:
            raise _dc_error(400, "name: a branch name is required")
        if start is None:
            raise _dc_error(400, "startPoint: a branch or commit to start from is required")
        with self.world.lock:
            repo = self._repository(request)
            self._require_write(request.principal, repo, "create a branch")
            if name in repo.branches:
                raise _dc_error(
                    400,
                    f"name: Branch '{name}' already exists in repository '{repo.slug}'.",
                    "com.atlassian.bitbucket.repository.DuplicateRefException",
                )
            overlap = next(
                (b for b in repo.branches if b.startswith(f"{name}/") or name.startswith(f"{b}/")),
                None,
            )
            if overlap is not None:
                raise _dc_error(
                    409,
                    f"name: Branch '{name}' overlaps the existing branch '{overlap}'.",
                    "com.atlassian.bitbucket.repository.DuplicateRefException",
                )
            commit = self._resolve(repo, start)
            self.world.branch_create(
                workspace=repo.workspace,
                slug=repo.slug,
                branch=name,
                target=commit.hash,
                actor=request.principal.account,
            )
            self._git_sync(repo)
            document = self._renderer().branch(name, repo.branches[name], default=False)
        status = 201 if request.path.startswith(BRANCH_UTILS) else 200
        return Response.json(document, status=status)

    # -- pull requests -------------------------------------------------------------------------

    def _reviewers(self, body: dict) -> list[str]:
        found = []
        for item in body.get("reviewers") or []:
            user = item.get("user") if isinstance(item, dict) else None
            name = user.get("name") or user.get("slug") if isinstance(user, dict) else None
            account = next((a for a in self.world.accounts.values() if a.nickname == name), None)
            if account is None:
                raise _dc_error(
                    409,
                    f"reviewers: {name or item!r} is not a user who can review this pull request.",
                    PR_EXCEPTION + "InvalidPullRequestReviewersException",
                )
            found.append(account.uuid)
        return found

    def pull_request_create(self, request: Request) -> Response:
        body = request.json()
        body = body if isinstance(body, dict) else {}
        title = body.get("title")
        if not isinstance(title, str) or not title.strip():
            raise _dc_error(400, "title: a pull request title is required")
        source = _branch(body.get("fromRef"))
        if source is None:
            raise _dc_error(400, "fromRef: the source branch (fromRef.id) is required")
        with self.world.lock:
            repo = self._repository(request, "pull_requests")
            destination = _branch(body.get("toRef")) or repo.mainbranch
            for field, branch in (("fromRef", source), ("toRef", destination)):
                if branch not in repo.branches:
                    raise _dc_error(
                        404,
                        f"{field}: Repository '{repo.slug}' does not contain branch '{branch}'.",
                        "com.atlassian.bitbucket.commit.NoSuchCommitException",
                    )
            if source == destination:
                raise _dc_error(
                    409,
                    "fromRef: the source and target branches are the same.",
                    PR_EXCEPTION + "InvalidPullRequestTargetException",
                )
            duplicate = next(
                (
                    pr
                    for pr in repo.pull_requests.values()
                    if pr.state == "OPEN"
                    and pr.source_branch == source
                    and pr.destination_branch == destination
                ),
                None,
            )
            if duplicate is not None:
                error = _dc_error(
                    409,
                    f"Only one pull request may be open for a given source and target branch "
                    f"(#{duplicate.id} is open from {source} to {destination}).",
                    PR_EXCEPTION + "DuplicatePullRequestException",
                )
                existing = self._renderer().pull_request(repo, duplicate)
                error.extra = {"existingPullRequest": existing}
                raise error
            history = {c.hash for c in repo.history(repo.branches[destination])}
            if repo.branches[source] in history:
                raise _dc_error(
                    409,
                    f"fromRef: {destination} is already up-to-date with {source}.",
                    PR_EXCEPTION + "EmptyPullRequestException",
                )
            if self.writes.take("pull_request"):
                raise _dc_error(
                    409,
                    f"The branches changed while the pull request from {source} was created; "
                    "try again.",
                    PR_EXCEPTION + "PullRequestOutOfDateException",
                )
            pr = self.world.pullrequest_open(
                workspace=repo.workspace,
                slug=repo.slug,
                title=title,
                source=source,
                destination=destination,
                description=str(body.get("description") or ""),
                author=request.principal.account,
                reviewers=self._reviewers(body),
            )
            return Response.json(self._renderer().pull_request(repo, pr), status=201)

    def _versioned_pr(self, request: Request) -> tuple[Repository, PullRequest]:
        repo = self._repository(request, "pull_requests")
        try:
            pr = repo.pull_requests[int(request.params["pr_id"])]
        except (KeyError, ValueError):
            raise _dc_error(
                404,
                f"Pull request {request.params['pr_id']} does not exist in {repo.slug}.",
                PR_EXCEPTION + "NoSuchPullRequestException",
            ) from None
        current = self._renderer().pull_request(repo, pr)
        if pr.state != "OPEN":
            raise _dc_error(
                409,
                f"Pull request {pr.id} is {current['state']}, not OPEN.",
                PR_EXCEPTION + "IllegalPullRequestStateException",
            )
        version = request.arg("version")
        if version not in (None, "") and str(current["version"]) != version:
            raise _dc_error(
                409,
                f"version: the pull request is at version {current['version']}, not {version}.",
                PR_EXCEPTION + "PullRequestOutOfDateException",
            )
        return repo, pr

    def pull_request_merge(self, request: Request) -> Response:
        with self.world.lock:
            repo, pr = self._versioned_pr(request)
            self._require_write(request.principal, repo, "merge a pull request")
            body = request.json() if request.body else {}
            message = body.get("message") if isinstance(body, dict) else None
            pr = self.world.pullrequest_merge(
                workspace=repo.workspace,
                slug=repo.slug,
                pr_id=pr.id,
                message=message or None,
                actor=request.principal.account,
            )
            self._git_sync(repo)
            return Response.json(self._renderer().pull_request(repo, pr))

    def pull_request_decline(self, request: Request) -> Response:
        with self.world.lock:
            repo, pr = self._versioned_pr(request)
            pr = self.world.pullrequest_decline(
                workspace=repo.workspace,
                slug=repo.slug,
                pr_id=pr.id,
                actor=request.principal.account,
            )
            return Response.json(self._renderer().pull_request(repo, pr))
