"""What write-back asks of a provider, and what it answers, whatever the provider.

A write is one commit of one or more files, either on the default branch (``commit``) or on a
branch of its own with a pull request (``pull_request``). ``expected`` holds, per path, the git
blob id of the file as the preview showed it (``None``: the file did not exist): a provider
refuses to write over a file that someone changed since (:class:`UpstreamChanged`) instead of
overwriting it. Blob ids are git's (``sha1("blob <size>\\0" + content)``), so a provider that
only serves raw files (Bitbucket Cloud) and one that speaks git (Data Center) compare alike.
"""

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from integrations.providers.base import ProviderAuthError, ProviderError, RepoRecord

WriteMode = Literal["pull_request", "commit"]
WRITE_MODES: tuple[str, ...] = ("pull_request", "commit")
MAX_WRITE_TRIES = 5
DEFAULT_AUTHOR = "Lantern <lantern@localhost>"


def path_error(path: object) -> str | None:
    """Why ``path`` is not a relative repository path (None when it is one)."""
    if not isinstance(path, str) or not path:
        return "a path is required"
    if path.startswith("/") or path.endswith("/") or "\\" in path or "\0" in path:
        return f"{path!r} is not a relative repository path"
    if any(part in ("", ".", "..", ".git") for part in path.split("/")):
        return f"{path!r} holds an empty, '.', '..' or '.git' part"
    return None


def blob_id(content: bytes | None) -> str | None:
    """Git's blob id of ``content`` (``None`` for a file that does not exist)."""
    if content is None:
        return None
    header = f"blob {len(content)}\0".encode()
    return hashlib.sha1(header + content, usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class FileChange:
    """One file to write: a repository path (no leading slash) and its new content."""

    path: str
    content: bytes

    def __post_init__(self) -> None:
        if isinstance(self.content, str):
            object.__setattr__(self, "content", self.content.encode())
        problem = path_error(self.path)
        if problem:
            raise ValueError(f"path: {problem}")


@dataclass(frozen=True)
class WriteRequest:
    """One write. ``branch`` is the pull request's source branch (ignored for a direct commit);
    ``reviewers`` are provider account ids (Cloud uuids, Data Center user names)."""

    repo: RepoRecord | dict
    files: tuple[FileChange, ...]
    message: str
    mode: WriteMode = "pull_request"
    branch: str | None = None
    title: str = ""
    description: str = ""
    reviewers: tuple[str, ...] = ()
    expected: Mapping[str, str | None] = field(default_factory=dict)
    author: str = DEFAULT_AUTHOR

    def __post_init__(self) -> None:
        errors = self.errors()
        if errors:
            raise ValueError("; ".join(f"{key}: {value}" for key, value in errors.items()))

    def errors(self) -> dict[str, str]:
        errors: dict[str, str] = {}
        if self.mode not in WRITE_MODES:
            errors["mode"] = f"must be one of {', '.join(WRITE_MODES)}"
        if not self.files:
            errors["files"] = "at least one file is required"
        elif len({f.path for f in self.files}) != len(self.files):
            errors["files"] = "a path is given twice"
        if not self.message.strip():
            errors["message"] = "a commit message is required"
        if self.mode == "pull_request":
            if not self.branch or self.branch.startswith(("refs/", "/")) or ".." in self.branch:
                errors["branch"] = "a branch name (without refs/) is required for a pull request"
            if not self.title.strip():
                errors["title"] = "a pull request title is required"
        return errors

    @property
    def data(self) -> dict[str, Any]:
        return self.repo.data if isinstance(self.repo, RepoRecord) else self.repo


@dataclass(frozen=True)
class WriteResult:
    """What was written: the commit (None when every file already held the content), the branch
    it is on, the pull request (opened or reused) and how many tries it took."""

    mode: str
    commit: str | None
    branch: str
    pull_request_url: str | None = None
    pull_request_id: str | None = None
    attempts: int = 1
    pull_request_reused: bool = False


class WriteConflict(ProviderError):
    """The branch kept moving: every try met a newer head. Nothing was written."""

    def __init__(self, message: str, *, attempts: int, status: int | None = 409):
        super().__init__(message, status=status)
        self.attempts = attempts


class UpstreamChanged(ProviderError):
    """A file to write changed in the repository since the preview: reported, never
    overwritten. ``commit`` is the commit that changed it (as far as the provider can tell)."""

    def __init__(self, *, path: str, commit: str | None, author: str = ""):
        by = f" by {author}" if author else ""
        at = f" in commit {commit[:12]}" if commit else ""
        super().__init__(
            f"{path}: changed in the repository{at}{by} since the preview; nothing was written. "
            "Preview again to see the new content.",
            status=409,
        )
        self.path = path
        self.commit = commit
        self.author = author


class WriteAccessMissing(ProviderAuthError):
    """The connector's credential may read but not write: ``missing`` names the scope or
    permission to grant."""

    def __init__(self, *, missing: str, detail: str = ""):
        text = f"The connector's credential lacks {missing}, which write-back needs"
        super().__init__(f"{text}: {detail}" if detail else text, status=403)
        self.missing = missing
