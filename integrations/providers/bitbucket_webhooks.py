"""What the two Bitbucket providers' webhook modules share: reading a delivery's headers and
body, and keeping exactly one Lantern hook on a subject (a workspace, project or repository)."""

import json
from collections.abc import Iterable, Mapping

from integrations.providers.base import ProviderError, WebhookPayloadError
from integrations.providers.http import redact


def header(headers: Mapping[str, str], name: str) -> str:
    """A header by name, whatever the case of the mapping's keys."""
    wanted = name.lower()
    return next((value for key, value in headers.items() if key.lower() == wanted), "")


def decode_body(body: bytes) -> dict:
    try:
        payload = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise WebhookPayloadError(f"The body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise WebhookPayloadError("The body is not a JSON object")
    return payload


def hooks_posting_to(pages: Iterable[dict], url: str) -> list[dict]:
    """The hooks, across a subject's listing pages, that post to ``url``."""
    return [hook for page in pages for hook in page.get("values", []) if hook.get("url") == url]


def delete_hooks(http, base: str, hooks: Iterable[dict], *, id_key: str) -> int:
    """Delete ``hooks`` (already gone is fine) from the subject at ``base``; returns how many."""
    count = 0
    for hook in hooks:
        http.request("DELETE", f"{base}/{hook[id_key]}", not_found_ok=True)
        count += 1
    return count


def _hook_write(http, method: str, path: str, body: dict, secret: str) -> dict:
    """A hook written with its secret in the body; an error quoting the body back comes out
    with the secret masked (the credential's own secrets already are, by the HTTP layer)."""
    try:
        return http.request(method, path, json=body).json()
    except ProviderError as error:
        error.message = redact(error.message, [secret])
        error.args = (error.message,)
        raise


def ensure_hook(
    http, base: str, pages: Iterable[dict], body: dict, *, id_key: str, secret: str
) -> dict:
    """Create or update the hook posting to ``body["url"]`` on the subject at ``base`` (whose
    hooks ``pages`` lists); other hooks with the same URL are removed so a delivery never arrives
    twice. The secret (which ``body`` carries) is never returned, so it is always written (that
    is also how rotation works). Returns the hook as Bitbucket answered it."""
    ours = hooks_posting_to(pages, body["url"])
    if not ours:
        return _hook_write(http, "POST", base, body, secret)
    keep, *extra = ours
    delete_hooks(http, base, extra, id_key=id_key)
    return _hook_write(http, "PUT", f"{base}/{keep[id_key]}", body, secret)
