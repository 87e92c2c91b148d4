"""Write-back on Bitbucket Data Center: git over HTTPS, then the pull-request REST endpoint.

The repository is fetched into a cached bare clone (:mod:`integrations.providers.gitcache`), the
commit built there on the head just fetched, and pushed **without force**: the push names the
head it was built on, and a branch that moved meanwhile is the server's refusal (or git's own
"fetch first"), never an overwrite. Then: fetch again, check that the files to write did not
change upstream (:class:`UpstreamChanged` if they did), build the one commit again on the new
head, push again — at most five tries, with backoff and full jitter.

Transport is dulwich (pure Python) or, for a repository larger than
``LANTERN_GIT_FALLBACK_THRESHOLD_MB`` by REST's size, the git CLI, which streams large packs
without holding them in memory. Both trust the connector's private CA, both send the
connector's credential as an ``Authorization`` header (dulwich: a pool manager header; git: a
config value in its environment), never in a URL or an argument, and the outbound guard checks
the host before any git traffic. Whatever a server or git says is redacted before it is logged
or put in an error.
"""

import logging
import os
import re
import subprocess
import tempfile
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import urllib3
from django.conf import settings
from dulwich.client import HttpGitClient, HTTPUnauthorized
from dulwich.errors import GitProtocolError, HangupException
from dulwich.repo import Repo

from integrations.providers.base import ProviderAuthError, ProviderError, RepoRecord
from integrations.providers.gitcache import MiB, clone_cache, commit_build, tree_blob
from integrations.providers.http import redact, ssl_context
from integrations.providers.outbound import outbound_check
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
    from integrations.providers.bitbucket_dc.provider import BitbucketDataCenterProvider

logger = logging.getLogger(__name__)

HEADS = b"refs/heads/"
ZERO = b"0" * 40
WRITE_PERMISSION = "REPO_WRITE"
HISTORY_LIMIT = 50
GIT_TIMEOUT = 300
_REJECTED = re.compile(r"rejected|non-fast-forward|fetch first|failed to update|stale info", re.I)


class _Moved(Exception):
    """A push met a branch that moved since the fetch."""


def _access_missing(text: str) -> WriteAccessMissing | None:
    if "403" in text or WRITE_PERMISSION in text:
        return WriteAccessMissing(
            missing=WRITE_PERMISSION,
            detail="give the token (or its user) REPO_WRITE on the repository to push",
        )
    return None


class DulwichRemote:
    """git smart HTTP through dulwich's client, over a urllib3 pool with Lantern's TLS."""

    def __init__(self, *, instance_url: str, path: str, headers: dict, ca_pem: str, secrets):
        self.path = path
        self.secrets = secrets
        self.pool = urllib3.PoolManager(
            headers=dict(headers), ssl_context=ssl_context(ca_pem), timeout=60.0
        )
        self.client = HttpGitClient(instance_url + "/", pool_manager=self.pool, quiet=True)

    def _error(self, exc: Exception, action: str) -> ProviderError:
        text = redact(str(exc), self.secrets)
        missing = _access_missing(text)
        if missing is not None:
            return missing
        if isinstance(exc, HTTPUnauthorized):
            return ProviderAuthError(f"git {action} was refused: the credential was not accepted")
        return ProviderError(f"git {action} failed: {text}")

    def fetch(self, repo: Repo) -> dict[bytes, bytes]:
        try:
            result = self.client.fetch(self.path, repo)
        except (GitProtocolError, HangupException, OSError) as exc:
            raise self._error(exc, "fetch") from exc
        heads = {ref: sha for ref, sha in result.refs.items() if ref.startswith(HEADS) and sha}
        for ref in list(repo.refs.keys(base=HEADS)):
            if HEADS + ref not in heads:
                del repo.refs[HEADS + ref]
        for ref, sha in heads.items():
            repo.refs[ref] = sha
        return heads

    def push(self, repo: Repo, ref: bytes, old: bytes | None, new: bytes) -> str | None:
        """Move ``ref`` from ``old`` (None: create it) to ``new``; why not, or None."""
        moved: list[bytes] = []

        def update_refs(refs: dict[bytes, bytes]) -> dict[bytes, bytes] | None:
            if refs.get(ref, ZERO) != (old or ZERO):
                moved.append(refs.get(ref, ZERO))
                return None  # never send an update that would not be a fast-forward
            return {ref: new}

        try:
            result = self.client.send_pack(self.path, update_refs, repo.generate_pack_data)
        except (GitProtocolError, HangupException, OSError) as exc:
            raise self._error(exc, "push") from exc
        if moved:
            return f"{ref.decode()} moved to {moved[0].decode()[:12]} (fetch first)"
        status = (result.ref_status or {}).get(ref)
        return None if status is None else redact(str(status), self.secrets)


class CliRemote:
    """The git CLI, for repositories past the size threshold. The credential travels in git's
    environment (``GIT_CONFIG_*``: ``http.extraHeader``), never in its arguments."""

    def __init__(self, *, url: str, headers: dict, ca_pem: str, secrets, workdir: str):
        self.url = url
        self.secrets = secrets
        self.workdir = workdir
        self.ca_file = None
        if ca_pem:
            self.ca_file = os.path.join(workdir, "ca.pem")
            with open(self.ca_file, "w") as handle:
                handle.write(ca_pem)
        pairs = [("http.extraHeader", f"{name}: {value}") for name, value in headers.items()]
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": workdir,
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_ASKPASS": "/bin/false",
            "GIT_CONFIG_COUNT": str(len(pairs)),
        }
        for index, (key, value) in enumerate(pairs):
            self.env[f"GIT_CONFIG_KEY_{index}"] = key
            self.env[f"GIT_CONFIG_VALUE_{index}"] = value

    def run(self, repo: Repo, *args: str) -> subprocess.CompletedProcess:
        options = ["-c", f"http.sslCAInfo={self.ca_file}"] if self.ca_file else []
        command = ["git", *options, f"--git-dir={repo.path}", *args]
        completed = subprocess.run(  # noqa: S603 (fixed arguments, no shell)
            command,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT,
            check=False,
        )
        output = redact(f"{completed.stdout}\n{completed.stderr}".strip(), self.secrets)
        logger.debug(
            "integrations.writeback.git",
            extra={"git_command": args[0], "returncode": completed.returncode, "output": output},
        )
        completed.output = output  # type: ignore[attr-defined]
        return completed

    def fetch(self, repo: Repo) -> dict[bytes, bytes]:
        done = self.run(
            repo, "fetch", "--prune", "--no-tags", self.url, "+refs/heads/*:refs/heads/*"
        )
        if done.returncode != 0:
            raise _access_missing(done.output) or ProviderError(f"git fetch failed: {done.output}")
        listed = self.run(repo, "for-each-ref", "--format=%(objectname) %(refname)", "refs/heads")
        heads = {}
        for line in listed.stdout.splitlines():
            sha, _, name = line.partition(" ")
            heads[name.encode()] = sha.encode()
        return heads

    def push(self, repo: Repo, ref: bytes, old: bytes | None, new: bytes) -> str | None:
        done = self.run(repo, "push", "--porcelain", self.url, f"{new.decode()}:{ref.decode()}")
        if done.returncode == 0:
            return None
        if _REJECTED.search(done.output):
            return done.output
        raise _access_missing(done.output) or ProviderError(f"git push failed: {done.output}")


class DataCenterWriter:
    def __init__(self, provider: "BitbucketDataCenterProvider", data: dict):
        self.provider = provider
        self.http = provider.client.http
        self.data = data
        self.key = data.get("project_key") or ""
        self.slug = data.get("slug") or ""
        self.rest = f"projects/{quote(self.key)}/repos/{quote(self.slug)}"
        self.instance = provider.instance_url
        self.git_path = f"/scm/{quote(self.key)}/{quote(self.slug)}.git"
        self.git_url = self.instance + self.git_path

    # -- credentials, size, transport --------------------------------------------------------

    def _credential(self) -> tuple[dict, list[str]]:
        credential = self.http.credentials[0]
        secrets = [s for c in self.http.credentials for s in c.secrets()]
        return credential.headers(), secrets

    def repository_bytes(self) -> int | None:
        """The repository's size by REST (``/projects/{key}/repos/{slug}/sizes``), when the
        instance answers it."""
        url = f"{self.instance}/projects/{quote(self.key)}/repos/{quote(self.slug)}/sizes"
        try:
            body = self.http.get_json(url, not_found_ok=True)
        except ProviderError:
            return None
        size = body.get("repository") if isinstance(body, dict) else None
        return size if isinstance(size, int) and not isinstance(size, bool) else None

    def remote(self, workdir: str):
        headers, secrets = self._credential()
        threshold = settings.LANTERN_GIT_FALLBACK_THRESHOLD_MB * MiB
        size = self.repository_bytes() or 0
        ca_pem = self.provider.connector.ca_pem or ""
        if size >= threshold:
            logger.info(
                "integrations.writeback.git_cli",
                extra={"repository": f"{self.key}/{self.slug}", "bytes": size},
            )
            return CliRemote(
                url=self.git_url, headers=headers, ca_pem=ca_pem, secrets=secrets, workdir=workdir
            )
        return DulwichRemote(
            instance_url=self.instance,
            path=self.git_path,
            headers=headers,
            ca_pem=ca_pem,
            secrets=secrets,
        )

    # -- the write ---------------------------------------------------------------------------

    @staticmethod
    def _blob(repo: Repo, commit: bytes, path: str) -> bytes | None:
        return tree_blob(repo, repo[commit].tree, path)

    def changed_by(self, repo: Repo, head: bytes, path: str) -> tuple[str, str]:
        current = self._blob(repo, head, path)
        sha = head
        for _ in range(HISTORY_LIMIT):
            commit = repo[sha]
            parent = commit.parents[0] if commit.parents else None
            before = self._blob(repo, parent, path) if parent else None
            if before != current:
                return sha.decode(), commit.author.decode("utf-8", "replace")
            if parent is None:
                break
            sha = parent
        return head.decode(), ""

    def upstream_check(self, request, repo: Repo, head: bytes, baseline: dict) -> None:
        for change in request.files:
            blob = self._blob(repo, head, change.path)
            if (blob.decode() if blob else None) != baseline[change.path]:
                commit, author = self.changed_by(repo, head, change.path)
                raise UpstreamChanged(path=change.path, commit=commit, author=author)

    def write(self, request: WriteRequest) -> WriteResult:
        if not self.instance.lower().startswith("https://"):
            raise ProviderError("base_url: write-back talks to Data Center over HTTPS only")
        default = self.data.get("default_branch")
        if not default:
            raise ProviderError("default_branch: the repository is empty; nothing to write onto")
        outbound_check(self.git_url)
        target = default if request.mode == "commit" else request.branch or ""
        files = {change.path: change.content for change in request.files}
        with tempfile.TemporaryDirectory(prefix="lantern-git-") as workdir:
            remote = self.remote(workdir)
            with clone_cache().checkout(self.git_url) as entry:
                commit, attempts = self._push_loop(request, entry, remote, default, target, files)
        if request.mode == "commit":
            return WriteResult(mode="commit", commit=commit, branch=target, attempts=attempts)
        return self.pull_request(request, commit=commit, attempts=attempts)

    def _push_loop(self, request, entry, remote, default: str, target: str, files: dict):
        retry = self.http.retry
        baseline: dict[str, str | None] | None = None
        last = ""
        for attempt in range(1, MAX_WRITE_TRIES + 1):
            heads = remote.fetch(entry.repo)
            repo = Repo(entry.path) if isinstance(remote, CliRemote) else entry.repo
            head = heads.get(HEADS + default.encode())
            if head is None:
                raise ProviderError(f"default_branch: {default} was not found in the repository")
            if baseline is None:
                baseline = {
                    path: request.expected[path]
                    if path in request.expected
                    else (blob.decode() if (blob := self._blob(repo, head, path)) else None)
                    for path in files
                }
            self.upstream_check(request, repo, head, baseline)
            ref = HEADS + target.encode()
            tip = heads.get(ref)
            parent = tip or head
            if tip is not None and all(
                self._blob(repo, parent, path) == _blob_bytes(content)
                for path, content in files.items()
            ):
                return parent.decode(), attempt  # the branch holds these files already
            new = commit_build(
                repo, parent=parent, files=files, message=request.message, author=request.author
            )
            refused = remote.push(repo, ref, tip, new)
            if refused is None:
                logger.info(
                    "integrations.writeback.pushed",
                    extra={"repository": f"{self.key}/{self.slug}", "attempt": attempt},
                )
                return new.decode(), attempt
            last = refused.splitlines()[-1] if refused else "refused"
            logger.info(
                "integrations.writeback.conflict",
                extra={"repository": f"{self.key}/{self.slug}", "attempt": attempt},
            )
            if attempt < MAX_WRITE_TRIES:
                self.http.sleep(retry.delay(attempt - 1, None))
        raise WriteConflict(
            f"{target}: the branch kept moving; {MAX_WRITE_TRIES} pushes met a newer head "
            f"({last}). Nothing was written.",
            attempts=MAX_WRITE_TRIES,
        )

    # -- pull requests -----------------------------------------------------------------------

    def open_pull_request(self, branch: str) -> dict | None:
        params = {"state": "OPEN", "direction": "OUTGOING", "at": f"refs/heads/{branch}"}
        pages = self.http.iter_start_pages(
            f"{self.rest}/pull-requests", params=params, limit=50, max_pages=20
        )
        for page in pages:
            for pr in page.get("values") or []:
                if (pr.get("fromRef") or {}).get("id") == f"refs/heads/{branch}":
                    return pr
        return None

    def pull_request(self, request: WriteRequest, *, commit: str, attempts: int) -> WriteResult:
        branch = request.branch or ""
        body = {
            "title": request.title,
            "description": request.description,
            "fromRef": {"id": f"refs/heads/{branch}"},
            "toRef": {"id": f"refs/heads/{self.data['default_branch']}"},
            "reviewers": [{"user": {"name": name}} for name in request.reviewers],
        }
        existing, reused, last = self.open_pull_request(branch), True, ""
        for attempt in range(MAX_WRITE_TRIES):
            if existing is not None:
                break
            try:
                existing = self.http.request("POST", f"{self.rest}/pull-requests", json=body).json()
                reused = False
            except ProviderError as exc:
                if exc.status != 409:
                    raise
                last = exc.message
                existing = self.open_pull_request(branch)  # a duplicate: the open one is reused
                if existing is None and attempt + 1 < MAX_WRITE_TRIES:
                    self.http.sleep(self.http.retry.delay(attempt, None))
        if existing is None:
            raise WriteConflict(
                f"pull request from {branch}: {MAX_WRITE_TRIES} tries were refused ({last}). "
                f"The commit {commit[:12]} is on {branch}; no pull request was opened.",
                attempts=MAX_WRITE_TRIES,
            )
        links = (existing.get("links") or {}).get("self") or [{}]
        return WriteResult(
            mode="pull_request",
            commit=commit,
            branch=branch,
            pull_request_url=links[0].get("href"),
            pull_request_id=str(existing.get("id")),
            attempts=attempts,
            pull_request_reused=reused,
        )

    # -- write access ------------------------------------------------------------------------

    def access(self) -> tuple[bool, str]:
        """Data Center advertises a repository's refs for pushing only to a user who may push
        (REPO_WRITE): asking for the advertisement is a dry run that writes nothing."""
        try:
            self.http.request(
                "GET", f"{self.git_url}/info/refs", params={"service": "git-receive-pack"}
            )
        except ProviderAuthError as exc:
            if exc.status in (401, 403):
                return False, (
                    f"The credential lacks {WRITE_PERMISSION} on {self.key}/{self.slug}, which "
                    f"write-back needs ({exc.message})"
                )
            raise
        return True, ""


def _blob_bytes(content: bytes) -> bytes:
    return blob_id(content).encode()


def write_files(provider: "BitbucketDataCenterProvider", request: WriteRequest) -> WriteResult:
    return DataCenterWriter(provider, request.data).write(request)


def write_access(provider: "BitbucketDataCenterProvider", repo: Any = None) -> tuple[bool, str]:
    if repo is None:
        page = provider.client.repositories_page(limit=1)
        first = next(iter(page.get("values") or []), None)
        if first is None:
            return False, "No repository is visible to the connector, so write access is unknown."
        data = {"project_key": (first.get("project") or {}).get("key"), "slug": first.get("slug")}
    else:
        data = repo.data if isinstance(repo, RepoRecord) else repo
    return DataCenterWriter(provider, data).access()
