"""The WSGI application: Django's handler, except that a webhook delivery skips the middleware
that has nothing to do for it.

Bitbucket posts hundreds of deliveries a second to one process (issue #8), and a delivery
carries no session, user, message or CSRF token: the endpoint is CSRF-exempt and authenticates
each delivery by its signature. So a request that resolves to a view in :data:`LEAN_VIEWS` goes
through the configured middleware less :data:`SKIPPED_FOR_LEAN_VIEWS` (security headers,
``X-Frame-Options``, the common middleware and the NUL guard still apply, as does any middleware
added later); every other request, a 404 under ``/webhooks/`` included, gets all of it.
"""

import os

from django.core.handlers.base import BaseHandler
from django.core.handlers.exception import convert_exception_to_response
from django.core.handlers.wsgi import WSGIHandler
from django.urls import Resolver404, get_resolver
from django.utils.module_loading import import_string

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

LEAN_PREFIX = "/webhooks/"
SKIPPED_FOR_LEAN_VIEWS = frozenset(
    {
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
        "allauth.account.middleware.AccountMiddleware",
    }
)


def lean_views() -> set:
    """The views (as the URLconf names them) served without :data:`SKIPPED_FOR_LEAN_VIEWS`."""
    from integrations import webhooks

    return {webhooks.webhook_receive}


class _LeanHandler(BaseHandler):
    """Runs a request already resolved to a lean view through the reduced middleware."""

    def load_middleware(self, is_async=False) -> None:
        from django.conf import settings

        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        handler = convert_exception_to_response(self._get_response)
        for path in reversed(settings.MIDDLEWARE):
            if path in SKIPPED_FOR_LEAN_VIEWS:
                continue
            middleware = import_string(path)(handler)
            if hasattr(middleware, "process_view"):
                self._view_middleware.insert(0, middleware.process_view)
            if hasattr(middleware, "process_template_response"):
                self._template_response_middleware.append(middleware.process_template_response)
            if hasattr(middleware, "process_exception"):
                self._exception_middleware.append(middleware.process_exception)
            handler = convert_exception_to_response(middleware)
        self._middleware_chain = handler

    def resolve_request(self, request):
        return request.resolver_match  # resolved by LanternWSGIHandler to choose this chain


class LanternWSGIHandler(WSGIHandler):
    def load_middleware(self, is_async=False) -> None:
        super().load_middleware(is_async)
        full = self._middleware_chain
        lean_handler = _LeanHandler()
        lean_handler.load_middleware()
        lean = lean_handler._middleware_chain
        views = lean_views()

        def chain(request):
            if request.path_info.startswith(LEAN_PREFIX):
                try:
                    match = get_resolver().resolve(request.path_info)
                except Resolver404:
                    return full(request)
                if match.func in views:
                    request.resolver_match = match
                    return lean(request)
            return full(request)

        self._middleware_chain = chain


def get_wsgi_application() -> LanternWSGIHandler:
    import django

    django.setup(set_prefix=False)
    return LanternWSGIHandler()


application = get_wsgi_application()
