"""Bitbucket Cloud payloads → Lantern records (no Django, no HTTP)."""

import re
from datetime import datetime
from typing import Any

from integrations.providers.base import CommitRecord, PullRequestRecord, RepoRecord


def parse_time(value: Any) -> datetime | None:
    if not value or not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _href(links: Any, name: str) -> str:
    link = (links or {}).get(name) if isinstance(links, dict) else None
    return link.get("href", "") if isinstance(link, dict) else ""


def tag(value: str) -> str:
    """A Backstage-valid tag from a language name (``Visual Basic`` → ``visual-basic``); ``""``
    when nothing valid is left."""
    text = re.sub(r"[^a-z0-9:+#]+", "-", value.strip().lower()).strip("-")
    return text[:63].rstrip("-")


def repository_record(raw: dict) -> RepoRecord:
    """What correlation and field mappings read (``data``): stable, documented keys."""
    project = raw.get("project") or {}
    workspace = raw.get("workspace") or {}
    mainbranch = raw.get("mainbranch") or {}
    links = raw.get("links") or {}
    clone = {
        item.get("name"): item.get("href")
        for item in links.get("clone") or []
        if isinstance(item, dict)
    }
    url = _href(links, "html")
    default_branch = mainbranch.get("name") if isinstance(mainbranch, dict) else None
    data = {
        "uuid": raw.get("uuid", ""),
        "name": raw.get("name") or raw.get("slug", ""),
        "slug": raw.get("slug", ""),
        "full_name": raw.get("full_name", ""),
        "description": raw.get("description") or "",
        "url": url,
        "workspace": workspace.get("slug", ""),
        "project_key": project.get("key", ""),
        "project_name": project.get("name", ""),
        "default_branch": default_branch,
        "is_private": bool(raw.get("is_private")),
        "visibility": "private" if raw.get("is_private") else "public",
        "language": raw.get("language") or "",
        "created_on": raw.get("created_on"),
        "updated_on": raw.get("updated_on"),
        "size": raw.get("size"),
        "website": raw.get("website") or "",
        "clone_https": clone.get("https", ""),
        "clone_ssh": clone.get("ssh", ""),
        "source_location": f"url:{url}/src/{default_branch}/" if url and default_branch else "",
        # Bitbucket Cloud repositories have no topics: the language is their one tag.
        "tags": [t for t in [tag(raw.get("language") or "")] if t],
    }
    return RepoRecord(
        external_id=data["uuid"],
        name=data["slug"] or data["name"],
        data=data,
        updated_at=parse_time(raw.get("updated_on")),
        raw=raw,
    )


def _user_name(user: Any) -> str:
    if not isinstance(user, dict):
        return ""
    return user.get("display_name") or user.get("nickname") or user.get("uuid", "")


def pull_request_record(raw: dict) -> PullRequestRecord:
    source = raw.get("source") or {}
    destination = raw.get("destination") or {}
    return PullRequestRecord(
        external_id=str(raw["id"]),
        title=raw.get("title") or "",
        state=raw.get("state") or "",
        updated_on=parse_time(raw.get("updated_on")) or parse_time(raw.get("created_on")),
        created_on=parse_time(raw.get("created_on")),
        author=_user_name(raw.get("author")),
        source_branch=((source.get("branch") or {}).get("name")) or "",
        destination_branch=((destination.get("branch") or {}).get("name")) or "",
        url=_href(raw.get("links"), "html"),
        raw=raw,
    )


def commit_record(raw: dict) -> CommitRecord:
    author = raw.get("author") or {}
    return CommitRecord(
        hash=raw["hash"],
        date=parse_time(raw.get("date")),
        message=raw.get("message") or "",
        author=(author.get("raw") or _user_name(author.get("user"))) if author else "",
        url=_href(raw.get("links"), "html"),
        raw=raw,
    )
