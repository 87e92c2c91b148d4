"""Bitbucket Data Center webhooks: delivery parsing and hook registration.

Repositories are identified by their numeric id (the external id, as a string) and addressed by
``PROJECT/slug``. A ``repo:refs_changed`` for a new branch carries an all-zero ``fromHash`` and
a deleted branch an all-zero ``toHash``: both become ``None`` in :class:`RefChange`, so no zero
hash ever reaches the commits API.
"""

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

from integrations.providers.base import RefChange, WebhookEvent, WebhookPayloadError
from integrations.providers.bitbucket_webhooks import (
    decode_body,
    delete_hooks,
    ensure_hook,
    header,
    hooks_posting_to,
)

DELIVERY_ID_HEADER = "X-Request-Id"
EVENTS = (
    "repo:refs_changed",
    "repo:modified",
    "pr:opened",
    "pr:modified",
    "pr:merged",
    "pr:declined",
    "pr:deleted",
    "pr:comment:added",
)
HOOK_NAME = "Lantern catalog"


def _hash(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip("0"):
        return None  # missing, or all zeros (a created or deleted ref)
    return value


def _refs(payload: dict) -> tuple[RefChange, ...]:
    refs = []
    for change in payload.get("changes") or []:
        if not isinstance(change, dict):
            continue
        ref = change.get("refId") or (change.get("ref") or {}).get("id")
        if isinstance(ref, str) and ref:
            refs.append(
                RefChange(
                    ref=ref, old=_hash(change.get("fromHash")), new=_hash(change.get("toHash"))
                )
            )
    return tuple(refs)


def _repository(event: str, payload: dict) -> Any:
    if event == "repo:modified":
        return payload.get("new")  # {old, new}: the repository as it is now
    if event.startswith("pr:"):
        pull_request = payload.get("pullRequest")
        to_ref = pull_request.get("toRef") if isinstance(pull_request, dict) else None
        return to_ref.get("repository") if isinstance(to_ref, dict) else None
    return payload.get("repository")


def parse_webhook(headers: Mapping[str, str], body: bytes) -> WebhookEvent:
    """A verified Bitbucket Data Center delivery → :class:`WebhookEvent` (``ignored`` for
    events Lantern does not act on, ``diagnostics:ping`` included)."""
    delivery_id = header(headers, DELIVERY_ID_HEADER).strip()
    if not delivery_id:
        raise WebhookPayloadError(f"The {DELIVERY_ID_HEADER} header is missing")
    payload = decode_body(body)
    event = header(headers, "X-Event-Key").strip() or str(payload.get("eventKey") or "")
    if event not in EVENTS:
        return WebhookEvent(event=event, delivery_id=delivery_id, ignored=True)
    repository = _repository(event, payload)
    if not isinstance(repository, dict) or repository.get("id") is None:
        raise WebhookPayloadError(f"A {event} payload without its repository")
    project = repository.get("project") if isinstance(repository.get("project"), dict) else {}
    slug = repository.get("slug") or ""
    pull_request = payload.get("pullRequest")
    pr_id = pull_request.get("id") if isinstance(pull_request, dict) else None
    return WebhookEvent(
        event=event,
        delivery_id=delivery_id,
        repository_external_id=str(repository["id"]),
        repository_name=f"{project.get('key', '')}/{slug}" if slug else None,
        payload=payload,
        pull_request_id=str(pr_id) if pr_id is not None else None,
        refs=_refs(payload) if event == "repo:refs_changed" else (),
    )


# -- registration ------------------------------------------------------------------------------


def _hook_body(url: str, secret: str, events: Iterable[str]) -> dict:
    return {
        "name": HOOK_NAME,
        "url": url,
        "active": True,
        "events": sorted(set(events)),
        "configuration": {"secret": secret},
    }


def _subject(project_key: str, repository_slug: str | None) -> str:
    base = f"projects/{quote(project_key)}"
    if repository_slug:
        return f"{base}/repos/{quote(repository_slug)}/webhooks"
    return f"{base}/webhooks"


def ensure_webhook(
    client,
    *,
    project_key: str,
    url: str,
    secret: str,
    events: Iterable[str] = EVENTS,
    repository_slug: str | None = None,
) -> dict:
    """Create or update (events, secret, active) Lantern's hook on a project (or one
    repository); duplicates posting to the same URL are removed. Paths are relative to the
    client's REST root (``{instance}/rest/api/1.0``). Calling it with a new secret rotates it."""
    http = client.http
    base = _subject(project_key, repository_slug)
    body = _hook_body(url, secret, events)
    return ensure_hook(http, base, http.iter_start_pages(base), body, id_key="id", secret=secret)


def remove_webhook(
    client, *, project_key: str, url: str, repository_slug: str | None = None
) -> int:
    """Delete every hook posting to ``url`` on the project (or repository); returns how many."""
    http = client.http
    base = _subject(project_key, repository_slug)
    hooks = hooks_posting_to(http.iter_start_pages(base), url)
    return delete_hooks(http, base, hooks, id_key="id")


def event_repository(event: WebhookEvent) -> dict | None:
    """What the target filters read of the delivery's repository (``project_key``, ``name``,
    ``slug``, as in the listing's record data); ``None`` for an event without one."""
    payload = event.payload if isinstance(event.payload, dict) else {}
    repository = None if event.ignored else _repository(event.event, payload)
    if not isinstance(repository, dict):
        return None
    project = repository.get("project") if isinstance(repository.get("project"), dict) else {}
    return {
        "project_key": project.get("key") or "",
        "name": repository.get("name") or "",
        "slug": repository.get("slug") or "",
    }
