"""The request pipeline the Cloud and Data Center sandboxes share (:class:`SandboxApi`).

Each request goes through routing, injected faults, authentication, the rate limit, the scope
check, the handler, then the faults that act on a good body; everything is recorded in the request
log. A server supplies its routes and handlers and says, through a few hooks, how its errors,
throttling and credentials look.
"""

import base64
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sandbox.auth import AuthError, OAuthError
from sandbox.cloud.credentials import Principal
from sandbox.control import PREFIX as CONTROL_PREFIX
from sandbox.control import dispatch as control_dispatch
from sandbox.datacenter.credentials import DcPrincipal
from sandbox.routing import ApiError, Request, Response, Route, Router
from sandbox.traffic import (
    FaultInjector,
    LoggedRequest,
    RateDecision,
    RateLimiter,
    RequestLog,
)
from sandbox.webhooks import WebhookSender
from sandbox.world import World, WorldError


@dataclass
class Outcome:
    response: Response
    fault: str | None = None
    principal: Principal | DcPrincipal | None = None
    extra_headers: dict[str, str] = field(default_factory=dict)


def oauth_error_response(exc: OAuthError) -> Response:
    document = {"error": exc.error, "error_description": exc.description}
    return Response.json(document, status=exc.status)


def oauth_redirect(authorize: Callable[..., str], **params: str | None) -> Response:
    """The authorize endpoint's answer: a redirect to where ``authorize(**params)`` says, or the
    OAuth error."""
    try:
        location = authorize(**params)
    except OAuthError as exc:
        return oauth_error_response(exc)
    return Response(status=302, content_type=None, headers={"Location": location})


def oauth_token_response(credentials, request: Request, form: dict[str, str]) -> Response:
    """The token endpoint's answer for ``form``, the client authenticated by ``credentials``
    (Cloud's or Data Center's: both have ``client`` and ``token``)."""
    client_id, client_secret = client_credentials(request, form)
    try:
        document = credentials.token(credentials.client(client_id, client_secret), form)
    except OAuthError as exc:
        return oauth_error_response(exc)
    return Response.json(document, headers={"Cache-Control": "no-store"})


def client_credentials(request: Request, form: dict[str, str]) -> tuple[str, str]:
    """An OAuth client's id and secret: from the form, or from HTTP Basic when it is sent."""
    client_id, client_secret = form.get("client_id", ""), form.get("client_secret", "")
    scheme, _, value = (request.headers.get("Authorization") or "").partition(" ")
    if scheme.lower() == "basic":
        try:
            raw = base64.b64decode(value.strip(), validate=True).decode()
        except ValueError:
            raw = ":"
        client_id, _, client_secret = raw.partition(":")
    return client_id, client_secret


class SandboxApi:
    """The shared pipeline; subclasses set the traffic objects and implement the hooks."""

    world: World
    log: RequestLog
    faults: FaultInjector
    rate_limits: RateLimiter
    webhooks: WebhookSender
    router: Router
    public_url: str
    hooks: dict
    hook_key: str  # the attribute ``hooks`` is keyed by
    _hooks_lock: threading.Lock
    # What a handler may raise besides AuthError and OAuthError, turned into an error response.
    handled_errors: tuple[type[Exception], ...] = (ApiError, WorldError)

    def start(self, public_url: str) -> None:
        self.public_url = public_url

    def stop(self) -> None:
        self.world.unsubscribe(self._on_world_event)
        self.webhooks.stop()

    def hook_get(self, request: Request) -> Response:
        with self.world.lock:
            return Response.json(self._hook_json(request, self._hook(request)))

    def hook_update(self, request: Request) -> Response:
        values = self._hook_fields(request.json(), partial=True)
        with self.world.lock:
            hook = self._hook(request)
            for key, value in values.items():
                setattr(hook, key, value)
            self._hook_changed(hook)
            return Response.json(self._hook_json(request, hook))

    def hook_delete(self, request: Request) -> Response:
        with self.world.lock:
            hook = self._hook(request)
            with self._hooks_lock:
                self.hooks.pop(getattr(hook, self.hook_key), None)
        return Response(status=204, content_type=None)

    # -- hooks ---------------------------------------------------------------------------------

    def _on_world_event(self, event) -> None:
        raise NotImplementedError

    def _hook(self, request: Request):
        """The webhook a request addresses, on the subject it addresses."""
        raise NotImplementedError

    @staticmethod
    def _hook_fields(body, *, partial: bool) -> dict:
        """A hook's attributes from a request body (``partial``: only those it names)."""
        raise NotImplementedError

    def _hook_json(self, request: Request, hook) -> dict:
        raise NotImplementedError

    def _hook_changed(self, hook) -> None:
        """Called after an update has set a hook's new attributes."""

    def _api_error(self, exc: Exception) -> ApiError:
        """An ApiError (or a world error) in this server's error shape."""
        raise NotImplementedError

    def _server_error(self) -> ApiError:
        raise NotImplementedError

    def _auth_failure(self, exc: AuthError) -> ApiError:
        raise NotImplementedError

    def _throttled(self, retry_after: int | None) -> Response:
        raise NotImplementedError

    def _authenticate(self, request: Request, route: Route) -> Principal | DcPrincipal:
        raise NotImplementedError

    def _check_scope(self, principal, scope: str | None) -> None:
        """Raise if the principal may not use an endpoint needing ``scope``; all may by default."""

    def _rate_resource(self, request: Request) -> str | None:
        """The rate-limit budget a request draws on (None: not limited)."""
        return "api"

    def _rate_headers(self, principal, decision: RateDecision) -> dict[str, str]:
        return {}

    def _fault_eligible(self, request: Request) -> bool:
        return re.search(self.faults.config.path_pattern, request.path) is not None

    # -- the pipeline --------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        outcome = Outcome(Response())
        try:
            route, params = self.router.match(request.method, request.path.rstrip("/") or "/")
            request.route, request.params = route, params
            if route.template.startswith(CONTROL_PREFIX):
                outcome.response = control_dispatch(route, request)
            else:
                outcome = self._serve(route, request)
        except ApiError as exc:
            outcome.response = Response.error(self._api_error(exc))
        except Exception:
            logger = logging.getLogger(type(self).__module__)  # the server's own logger
            logger.exception("sandbox.handler_failed", extra={"path": request.path})
            outcome.response = Response.error(self._server_error())
        outcome.response.headers.update(outcome.extra_headers)
        route = request.route
        self.log.record(
            LoggedRequest(
                method=request.method,
                path=request.path,
                query=request.query,
                status=0 if outcome.response.drop else outcome.response.status,
                endpoint=route.endpoint if route else "unmatched",
                credential=outcome.principal.id if outcome.principal else None,
                fault=outcome.fault,
                at=time.time(),
            )
        )
        return outcome.response

    def _serve(self, route: Route, request: Request) -> Outcome:
        outcome = Outcome(Response())
        eligible = self._fault_eligible(request)
        fault = self.faults.before() if eligible else None
        outcome.fault = fault
        if fault == "slow":
            time.sleep(self.faults.config.slow_seconds)
        elif fault is not None:
            outcome.response = self._fault_response(fault)
            return outcome
        try:
            if route.auth:
                request.principal = outcome.principal = self._authenticate(request, route)
                limited = self._rate_limit(request, outcome)
                if limited is not None:
                    outcome.response = limited
                    return outcome
                self._check_scope(request.principal, route.scope)
            response = route.handler(request)
        except AuthError as exc:
            response = Response.error(self._auth_failure(exc))
        except OAuthError as exc:
            response = oauth_error_response(exc)
        except self.handled_errors as exc:
            response = Response.error(self._api_error(exc))
        outcome.response = response
        # One fault per request: a slow one draws no second fault for its body. (Drawing it
        # would happen after the sleep, when the client may have moved on, and shift the seeded
        # sequence by however many requests it made meanwhile.)
        if 200 <= response.status < 300 and response.document is not None and fault is None:
            self._shape(request, response, eligible, outcome)
        return outcome

    def _fault_response(self, fault: str) -> Response:
        if fault == "drop":
            return Response(drop=True)
        if fault == "429":
            return self._throttled(self.faults.retry_after())
        if fault == "500":
            return Response.error(self._server_error())
        reason = {"502": "Bad Gateway", "503": "Service Unavailable"}[fault]
        page = f"<html><body><h1>{fault} {reason}</h1></body></html>"
        return Response.text(page, status=int(fault), content_type="text/html")

    def _rate_limit(self, request: Request, outcome: Outcome) -> Response | None:
        resource = self._rate_resource(request)
        if resource is None:
            return None
        decision = self.rate_limits.hit(request.principal.budget, resource)
        outcome.extra_headers.update(self._rate_headers(request.principal, decision))
        if decision.allowed:
            return None
        return self._throttled(decision.retry_after)

    def _shape(self, request: Request, response: Response, eligible: bool, outcome) -> None:
        """The faults that act on a good JSON body (page faults only on a paged one)."""
        if not eligible:
            return
        document, page = response.document, response.page
        start_paged = page is None and _is_start_page(document)
        if start_paged:
            # A start/limit page (Data Center) has no link to respell: a continuation (start > 0)
            # is emptied, or pointed back at itself, through ``nextPageStart``.
            continuation = document["start"] > 0
            page_next = continuation and not document["isLastPage"]
        else:
            continuation = bool(page and page.continuation)
            page_next = bool(page and isinstance(document, dict) and document.get("next"))
        fault = self.faults.after(has_body=True, page_next=page_next, continuation=continuation)
        if fault is None:
            return
        outcome.fault = fault
        if fault == "empty_page" and start_paged:
            response.document = {
                **document,
                "values": [],
                "size": 0,
                "nextPageStart": document["start"],
            }
        elif fault == "empty_page":
            response.document = {**document, "values": [], "next": page.retry_url}
        elif fault == "repeat_next" and start_paged:
            response.document = {
                **document,
                "isLastPage": False,
                "nextPageStart": document["start"],
            }
        elif fault == "repeat_next":
            response.document = {**document, "next": page.self_url}
        else:
            encoded = response.encode()
            response.document = None
            response.body = encoded[: len(encoded) // 2] if fault == "truncated" else encoded + b"}"


def _is_start_page(document) -> bool:
    """A ``start``/``limit`` envelope (``values``, ``start``, ``isLastPage``)."""
    return (
        isinstance(document, dict)
        and isinstance(document.get("values"), list)
        and isinstance(document.get("start"), int)
        and isinstance(document.get("isLastPage"), bool)
    )
