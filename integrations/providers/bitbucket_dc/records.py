"""Bitbucket Data Center payloads → Lantern records (no Django, no HTTP).

Data Center dates are epoch milliseconds; links are arrays (``links.self[0].href``,
``links.clone[{name: http|ssh, href}]``); a repository's id is an integer, unique on the
instance (its slug is unique only within its project).
"""

from datetime import UTC, datetime
from typing import Any

from integrations.providers.base import CommitRecord, PullRequestRecord, RepoRecord


def parse_stored_time(value: Any) -> datetime | None:
    """An ``updated_on`` as :func:`repository_record` stored it (ISO-8601), or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def from_millis(value: Any) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return datetime.fromtimestamp(value / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def self_href(raw: Any) -> str:
    links = raw.get("links") if isinstance(raw, dict) else None
    items = links.get("self") if isinstance(links, dict) else None
    if isinstance(items, list) and items and isinstance(items[0], dict):
        return items[0].get("href") or ""
    return ""


def _clone_links(raw: dict) -> dict[str, str]:
    links = raw.get("links") if isinstance(raw.get("links"), dict) else {}
    return {
        item.get("name"): item.get("href", "")
        for item in links.get("clone") or []
        if isinstance(item, dict)
    }


def branch_name(ref: Any) -> str | None:
    """``refs/heads/main`` (or a ref object) → ``main``."""
    if isinstance(ref, dict):
        ref = ref.get("displayId") or ref.get("id")
    if not isinstance(ref, str) or not ref:
        return None
    return ref[len("refs/heads/") :] if ref.startswith("refs/heads/") else ref


def repository_record(
    raw: dict,
    *,
    default_branch: str | None,
    latest_commit: dict | None = None,
    known_tip: str | None = None,
    known_updated: datetime | None = None,
) -> RepoRecord:
    """What correlation and field mappings read (``data``): stable, documented keys.

    Data Center has no "updated" date on repositories; the newest commit of the default branch
    stands in for it (``updated_on``), so unchanged repositories are recognised as such. That
    commit is ``latest_commit`` (read), or — when its id is the one already stored —
    ``known_tip`` with the stored ``known_updated``, so an unchanged repository costs no read
    of its commit."""
    project = raw.get("project") if isinstance(raw.get("project"), dict) else {}
    clone = _clone_links(raw)
    url = self_href(raw)  # https://host/projects/KEY/repos/slug/browse
    updated = None
    tip = known_tip
    if latest_commit:
        tip = latest_commit.get("id") or tip
        updated = from_millis(
            latest_commit.get("committerTimestamp") or latest_commit.get("authorTimestamp")
        )
    elif known_tip:
        updated = known_updated
    public = bool(raw.get("public"))
    data = {
        "id": str(raw.get("id", "")),
        "name": raw.get("name") or raw.get("slug", ""),
        "slug": raw.get("slug", ""),
        "full_name": f"{project.get('key', '')}/{raw.get('slug', '')}",
        "description": raw.get("description") or "",
        "url": url,
        "project_key": project.get("key", ""),
        "project_name": project.get("name", ""),
        "default_branch": default_branch,
        "public": public,
        "visibility": "public" if public else "private",
        "state": raw.get("state") or "",
        "archived": bool(raw.get("archived")),
        "forkable": bool(raw.get("forkable")),
        "scm": raw.get("scmId") or "git",
        "clone_http": clone.get("http", ""),
        "clone_ssh": clone.get("ssh", ""),
        "latest_commit": tip,
        "updated_on": updated.isoformat() if updated else None,
        "source_location": f"url:{url}/" if url and default_branch else "",
        "tags": [],
    }
    return RepoRecord(
        external_id=data["id"] if raw.get("id") is not None else "",
        name=data["slug"] or data["name"],
        data=data,
        updated_at=updated,
        raw=raw,
    )


def _person(value: Any) -> str:
    if not isinstance(value, dict):
        return ""
    name = value.get("displayName") or value.get("name") or ""
    email = value.get("emailAddress") or ""
    return f"{name} <{email}>" if email else name


def pull_request_record(raw: dict) -> PullRequestRecord:
    author = raw.get("author") if isinstance(raw.get("author"), dict) else {}
    user = author.get("user") if isinstance(author.get("user"), dict) else {}
    created = from_millis(raw.get("createdDate"))
    return PullRequestRecord(
        external_id=str(raw["id"]),
        title=raw.get("title") or "",
        state=raw.get("state") or "",
        updated_on=from_millis(raw.get("updatedDate")) or created,
        created_on=created,
        author=user.get("displayName") or user.get("name") or "",
        source_branch=branch_name(raw.get("fromRef")) or "",
        destination_branch=branch_name(raw.get("toRef")) or "",
        url=self_href(raw),
        raw=raw,
    )


def commit_record(raw: dict, *, repository_url: str = "") -> CommitRecord:
    """``repository_url``: the repository's web URL (``.../repos/slug``), for the commit's link."""
    date = from_millis(raw.get("authorTimestamp")) or from_millis(raw.get("committerTimestamp"))
    base = repository_url.removesuffix("/browse").rstrip("/")
    return CommitRecord(
        hash=raw["id"],
        date=date,
        message=raw.get("message") or "",
        author=_person(raw.get("author")),
        url=f"{base}/commits/{raw['id']}" if base else "",
        raw=raw,
    )
