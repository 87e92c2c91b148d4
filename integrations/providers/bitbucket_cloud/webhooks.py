"""Bitbucket Cloud webhooks: delivery parsing and hook registration.

Parsing runs after the signature check and reduces a delivery to a hint (which repository,
which pull request, which refs); the engine re-reads the repository from the API. Registration
prefers one workspace hook and falls back to a hook per repository when the credential may not
manage workspace hooks (repository or project access tokens).
"""

from collections.abc import Iterable, Mapping
from typing import Any

from integrations.providers.base import (
    ProviderAuthError,
    RefChange,
    WebhookEvent,
    WebhookPayloadError,
)
from integrations.providers.bitbucket_webhooks import (
    decode_body,
    delete_hooks,
    ensure_hook,
    header,
    hooks_posting_to,
)

DELIVERY_ID_HEADER = "X-Request-UUID"
EVENTS = (
    "repo:push",
    "repo:updated",
    "pullrequest:created",
    "pullrequest:updated",
    "pullrequest:approved",
    "pullrequest:unapproved",
    "pullrequest:fulfilled",
    "pullrequest:rejected",
    "pullrequest:comment_created",
)
HOOK_DESCRIPTION = "Lantern catalog"


def _ref(side: Any) -> tuple[str | None, str | None]:
    if not isinstance(side, dict):
        return None, None
    target = side.get("target") if isinstance(side.get("target"), dict) else {}
    name = side.get("name")
    kind = side.get("type")
    ref = None
    if isinstance(name, str):
        ref = f"refs/tags/{name}" if kind == "tag" else f"refs/heads/{name}"
    return ref, target.get("hash") or None


def _push_refs(payload: dict) -> tuple[RefChange, ...]:
    push = payload.get("push") if isinstance(payload.get("push"), dict) else {}
    refs = []
    for change in push.get("changes") or []:
        if not isinstance(change, dict):
            continue
        old_ref, old = _ref(change.get("old"))
        new_ref, new = _ref(change.get("new"))
        ref = new_ref or old_ref
        if ref:
            refs.append(RefChange(ref=ref, old=old, new=new))
    return tuple(refs)


def parse_webhook(headers: Mapping[str, str], body: bytes) -> WebhookEvent:
    """A verified Bitbucket Cloud delivery → :class:`WebhookEvent` (``ignored`` for events
    Lantern does not act on). Raises :class:`WebhookPayloadError` for a body that is not a JSON
    object or an event without its repository."""
    event = header(headers, "X-Event-Key").strip()
    delivery_id = header(headers, DELIVERY_ID_HEADER).strip()
    if not delivery_id:
        raise WebhookPayloadError(f"The {DELIVERY_ID_HEADER} header is missing")
    payload = decode_body(body)
    if event not in EVENTS:
        return WebhookEvent(event=event, delivery_id=delivery_id, ignored=True)
    repository = payload.get("repository")
    if not isinstance(repository, dict) or not (
        repository.get("uuid") or repository.get("full_name")
    ):
        raise WebhookPayloadError(f"A {event} payload without its repository")
    full_name = repository.get("full_name") or ""
    pullrequest = payload.get("pullrequest")
    pr_id = pullrequest.get("id") if isinstance(pullrequest, dict) else None
    return WebhookEvent(
        event=event,
        delivery_id=delivery_id,
        repository_external_id=repository.get("uuid") or None,
        # The slug (what the API addresses a repository by, with the workspace).
        repository_name=full_name.split("/", 1)[-1] or repository.get("name") or None,
        payload=payload,
        pull_request_id=str(pr_id) if pr_id is not None else None,
        refs=_push_refs(payload) if event == "repo:push" else (),
    )


# -- registration ------------------------------------------------------------------------------


def _hook_body(url: str, secret: str, events: Iterable[str]) -> dict:
    return {
        "description": HOOK_DESCRIPTION,
        "url": url,
        "active": True,
        "secret": secret,
        "events": sorted(set(events)),
    }


def _subject_ensure(http, base: str, url: str, secret: str, events: Iterable[str]) -> dict:
    """Create or update (events, secret, active) the hook posting to ``url`` on one subject."""
    body = _hook_body(url, secret, events)
    return ensure_hook(http, base, http.iter_next_pages(base), body, id_key="uuid", secret=secret)


def ensure_webhook(
    client,
    *,
    workspace: str,
    url: str,
    secret: str,
    events: Iterable[str] = EVENTS,
    repositories: Iterable[str] = (),
) -> list[dict]:
    """Register (or bring up to date) Lantern's hook: one workspace hook when the credential
    may manage them, else one per repository in ``repositories`` (slugs or uuids). Returns the
    hook subscriptions as Bitbucket answered them. Calling it again with a new secret rotates
    the secret on Bitbucket."""
    events = list(events)
    try:
        return [_subject_ensure(client.http, f"workspaces/{workspace}/hooks", url, secret, events)]
    except ProviderAuthError as exc:
        if exc.status != 403:
            raise
    return [
        _subject_ensure(client.http, f"repositories/{workspace}/{slug}/hooks", url, secret, events)
        for slug in repositories
    ]


def remove_webhook(client, *, workspace: str, url: str, repositories: Iterable[str] = ()) -> int:
    """Delete every hook posting to ``url`` (workspace and per-repository); returns how many."""
    subjects = [f"workspaces/{workspace}/hooks"]
    subjects += [f"repositories/{workspace}/{slug}/hooks" for slug in repositories]
    removed = 0
    for base in subjects:
        try:
            hooks = hooks_posting_to(client.http.iter_next_pages(base), url)
        except ProviderAuthError as exc:
            if exc.status != 403:
                raise
            continue
        removed += delete_hooks(client.http, base, hooks, id_key="uuid")
    return removed


def event_repository(event: WebhookEvent) -> dict | None:
    """What the target filters read of the delivery's repository (``project_key``, ``name``,
    ``slug``, as in the listing's record data); ``None`` for an event without one."""
    payload = event.payload if isinstance(event.payload, dict) else {}
    repository = payload.get("repository")
    if event.ignored or not isinstance(repository, dict):
        return None
    project = repository.get("project") if isinstance(repository.get("project"), dict) else {}
    return {
        "project_key": project.get("key") or "",
        "name": repository.get("name") or event.repository_name or "",
        "slug": event.repository_name or "",
    }
