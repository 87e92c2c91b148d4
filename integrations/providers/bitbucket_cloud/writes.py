"""Write-back on Bitbucket Cloud, through the provider's own HTTP client (retries, the outbound
guard, the request budget and redaction apply).

A commit is one multipart ``POST /src`` naming its ``parents``, so it is atomic and never lands
on a head it was not built on: a head that moved is Bitbucket's 409, and the write is tried again
on the new head (after checking that the files to write did not change there) up to five times
with backoff and full jitter. A pull request's branch is made by that same commit (``branch`` a
new name, ``parents`` the default branch's head), so a conflict leaves no empty branch behind;
an existing branch of that name is committed on, and an open pull request from it is reused.
"""

import logging
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from integrations.providers.base import ProviderAuthError, ProviderError, RepoRecord
from integrations.providers.writes import (
    MAX_WRITE_TRIES,
    UpstreamChanged,
    WriteAccessMissing,
    WriteConflict,
    WriteRequest,
    WriteResult,
    blob_id,
)

if TYPE_CHECKING:
    from integrations.providers.bitbucket_cloud.provider import BitbucketCloudProvider

logger = logging.getLogger(__name__)

COMMIT_SCOPE = "repository:write"
PULL_REQUEST_SCOPE = "pullrequest:write"
HISTORY_LIMIT = 30  # commits walked back to name the one that changed a file
_SCOPE_RE = re.compile(r"scopes?:?\s+([a-z]+(?::[a-z]+)?)")


class _Conflict(Exception):
    """A try met a head that moved (Bitbucket's 409)."""


class CloudWriter:
    """One write (or write-access check) on one repository."""

    def __init__(self, provider: "BitbucketCloudProvider", data: dict):
        self.provider = provider
        self.http = provider.client.http
        self.data = data
        self.path = f"repositories/{provider.workspace}/{quote(provider._slug(data), safe='{}')}"

    # -- reads -------------------------------------------------------------------------------

    def branch_head(self, branch: str) -> str | None:
        found = self.http.get_json(f"{self.path}/refs/branches/{quote(branch)}", not_found_ok=True)
        return (found or {}).get("target", {}).get("hash") or None

    def file(self, revision: str, path: str) -> bytes | None:
        response = self.http.request(
            "GET", f"{self.path}/src/{revision}/{quote(path)}", not_found_ok=True
        )
        return None if response is None else response.content

    def changed_by(self, head: str, path: str, content: bytes | None) -> tuple[str, str]:
        """The newest commit from ``head`` back whose first parent holds ``path`` differently
        than ``content`` (what the head holds), and its author; ``head`` itself when the walk
        finds none within :data:`HISTORY_LIMIT` commits."""
        page = (
            self.http.get_json(f"{self.path}/commits/{head}", params={"pagelen": HISTORY_LIMIT})
            or {}
        )
        for commit in page.get("values") or []:
            parents = commit.get("parents") or []
            before = self.file(parents[0]["hash"], path) if parents else None
            if before != content:
                return commit["hash"], (commit.get("author") or {}).get("raw", "")
        return head, ""

    # -- the write ---------------------------------------------------------------------------

    def _refused(self, exc: ProviderAuthError, scope: str) -> WriteAccessMissing:
        named = _SCOPE_RE.search(exc.message)
        return WriteAccessMissing(missing=named.group(1) if named else scope, detail=exc.message)

    def commit(self, request: WriteRequest, *, branch: str, parent: str) -> str:
        data: dict[str, Any] = {
            "message": request.message,
            "author": request.author,
            "branch": branch,
            "parents": parent,
        }
        files = {
            f"/{change.path}": (change.path.rsplit("/", 1)[-1], change.content)
            for change in request.files
        }
        try:
            response = self.http.request("POST", f"{self.path}/src", data=data, files=files)
        except ProviderAuthError as exc:
            if exc.status == 403:
                raise self._refused(exc, COMMIT_SCOPE) from exc
            raise
        except ProviderError as exc:
            if exc.status == 409:
                raise _Conflict(exc.message) from exc
            raise
        location = response.headers.get("Location", "")
        return location.rstrip("/").rsplit("/", 1)[-1] or self.branch_head(branch) or ""

    def upstream_check(self, request: WriteRequest, head: str, baseline: dict) -> None:
        for change in request.files:
            current = self.file(head, change.path)
            if blob_id(current) != baseline[change.path]:
                commit, author = self.changed_by(head, change.path, current)
                raise UpstreamChanged(path=change.path, commit=commit, author=author)

    def unchanged(self, request: WriteRequest, revision: str) -> bool:
        return all(self.file(revision, c.path) == c.content for c in request.files)

    def write(self, request: WriteRequest) -> WriteResult:
        default = self.data.get("default_branch")
        if not default:
            raise ProviderError("default_branch: the repository is empty; nothing to write onto")
        target = default if request.mode == "commit" else request.branch
        retry = self.http.retry
        head = self.branch_head(default)
        if head is None:
            raise ProviderError(f"default_branch: {default} was not found in the repository")
        baseline = {
            c.path: request.expected[c.path]
            if c.path in request.expected
            else blob_id(self.file(head, c.path))
            for c in request.files
        }
        last = ""
        for attempt in range(1, MAX_WRITE_TRIES + 1):
            if attempt > 1:
                head = self.branch_head(default) or head
            self.upstream_check(request, head, baseline)
            branch_tip = head if target == default else self.branch_head(target)
            parent = branch_tip or head
            if branch_tip is not None and self.unchanged(request, parent):
                commit: str | None = None  # the branch holds these files already
            else:
                try:
                    commit = self.commit(request, branch=target, parent=parent)
                except _Conflict as exc:
                    last = str(exc)
                    logger.info(
                        "integrations.writeback.conflict",
                        extra={"repository": self.path, "branch": target, "attempt": attempt},
                    )
                    if attempt < MAX_WRITE_TRIES:
                        self.http.sleep(retry.delay(attempt - 1, None))
                    continue
            logger.info(
                "integrations.writeback.committed",
                extra={"repository": self.path, "branch": target, "attempt": attempt},
            )
            if request.mode == "commit":
                return WriteResult(mode="commit", commit=commit, branch=target, attempts=attempt)
            return self.pull_request(request, commit=commit, attempts=attempt)
        raise WriteConflict(
            f"{target}: the branch kept moving; {MAX_WRITE_TRIES} tries met a newer head "
            f"({last}). Nothing was written.",
            attempts=MAX_WRITE_TRIES,
        )

    # -- pull requests -----------------------------------------------------------------------

    def open_pull_request(self, branch: str) -> dict | None:
        pages = self.http.iter_next_pages(
            f"{self.path}/pullrequests", params={"state": "OPEN", "pagelen": 50}, max_pages=20
        )
        for page in pages:
            for pr in page.get("values") or []:
                if ((pr.get("source") or {}).get("branch") or {}).get("name") == branch:
                    return pr
        return None

    def pull_request(self, request: WriteRequest, *, commit: str | None, attempts: int):
        branch = request.branch or ""
        existing = self.open_pull_request(branch)
        reused = existing is not None
        if existing is None:
            body = {
                "title": request.title,
                "description": request.description,
                "source": {"branch": {"name": branch}},
                "destination": {"branch": {"name": self.data["default_branch"]}},
                "reviewers": [{"uuid": reviewer} for reviewer in request.reviewers],
                "close_source_branch": True,
            }
            try:
                response = self.http.request("POST", f"{self.path}/pullrequests", json=body)
            except ProviderAuthError as exc:
                if exc.status == 403:
                    raise self._refused(exc, PULL_REQUEST_SCOPE) from exc
                raise
            existing = response.json()
        return WriteResult(
            mode="pull_request",
            commit=commit or self.branch_head(branch),
            branch=branch,
            pull_request_url=((existing.get("links") or {}).get("html") or {}).get("href"),
            pull_request_id=str(existing.get("id")),
            attempts=attempts,
            pull_request_reused=reused,
        )

    # -- write access ------------------------------------------------------------------------

    def access(self) -> tuple[bool, str]:
        """Bitbucket tells granted scopes only in a refusal, so each write endpoint is asked
        with an empty body: the scope check comes first (403 naming the scope), and a granted
        scope meets the 400 of the missing fields, which writes nothing."""
        probes = (
            (f"{self.path}/refs/branches", COMMIT_SCOPE),
            (f"{self.path}/pullrequests", PULL_REQUEST_SCOPE),
        )
        missing = []
        for path, scope in probes:
            try:
                self.http.request("POST", path, json={})
            except ProviderAuthError as exc:
                if exc.status != 403:
                    raise
                missing.append(self._refused(exc, scope).missing)
            except ProviderError as exc:
                if exc.status != 400:
                    raise
        if missing:
            return False, f"The credential lacks {', '.join(missing)}, which write-back needs."
        return True, ""


def write_files(provider: "BitbucketCloudProvider", request: WriteRequest) -> WriteResult:
    return CloudWriter(provider, request.data).write(request)


def write_access(provider: "BitbucketCloudProvider", repo: Any = None) -> tuple[bool, str]:
    if repo is None:
        data = _first_repository(provider)
    else:
        data = repo.data if isinstance(repo, RepoRecord) else repo
    if data is None:
        return False, "No repository is visible to the connector, so write access is unknown."
    return CloudWriter(provider, data).access()


def _first_repository(provider: "BitbucketCloudProvider") -> dict | None:
    page = provider.client.repositories_page(provider.workspace)
    first = next(iter(page.get("values") or []), None)
    return {"uuid": first.get("uuid"), "slug": first.get("slug")} if first else None
