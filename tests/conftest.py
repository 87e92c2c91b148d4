"""Fixtures shared by every test package."""

import uuid

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from portal.models import ApiToken


@pytest.fixture
def make_user(db):
    def make(username: str = "reader", *perms: str):
        user = get_user_model().objects.create_user(username=username, password="pw-unused-123")
        for perm in perms:
            app_label, codename = perm.split(".")
            user.user_permissions.add(
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
            )
        return user

    return make


@pytest.fixture
def bearer_client():
    """An API client authenticated with a real bearer token for the given user."""

    def make(user) -> APIClient:
        _, raw = ApiToken.objects.issue(user=user, name="test")
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        return client

    return make


@pytest.fixture
def reader_client(make_user, bearer_client) -> APIClient:
    return bearer_client(make_user("reader"))


@pytest.fixture(autouse=True)
def celery_tasks_in_process():
    """Tasks run in process in tests, even where CELERY_BROKER_URL points at Redis (CI); the
    tests that need a real worker switch this off themselves."""
    from portal.celery import app

    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = previous


from tests.sandbox.fixtures import cloud_sandbox, make_cloud_sandbox  # noqa: E402, F401


@pytest.fixture(autouse=True)
def no_automatic_webhook_registration(settings):
    """Registration talks to the provider; the tests that check it switch it back on."""
    settings.LANTERN_WEBHOOKS_AUTO_REGISTER = False


@pytest.fixture(autouse=True)
def fresh_request_budgets(settings, monkeypatch):
    """Each test's request budgets start afresh: the shared store (Redis or a table) outlives
    a test, so each counts under a prefix of its own (worker processes it starts inherit it)."""
    prefix = f"lantern-test:{uuid.uuid4().hex[:12]}"
    settings.LANTERN_REQUEST_BUDGET_PREFIX = prefix
    monkeypatch.setenv("LANTERN_REQUEST_BUDGET_PREFIX", prefix)
    yield
    from integrations.providers.budget import budget_stores_close

    budget_stores_close()


# Host names the suite's fixtures use for instances that are never contacted, resolved to a
# documentation address (public by the outbound guard's rules, TEST-NET-3); names under the
# reserved .invalid domain, and any other name, do not resolve.
OFFLINE_NAMES_SUFFIXES = (".test", ".example", ".example.com", ".example.org", ".example.net")
OFFLINE_ADDRESS = "203.0.113.10"


@pytest.fixture(autouse=True)
def offline_resolver(monkeypatch):
    """Name resolution never leaves the machine: a connector's base URL is resolved when it
    is saved (the outbound guard's check), and the configured name server is not on loopback.
    Address literals and ``localhost`` resolve as usual; the reserved example names resolve to
    ``OFFLINE_ADDRESS``; anything else answers "not known". Tests that fake other answers
    patch ``socket.getaddrinfo`` over this."""
    import ipaddress
    import socket

    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if name is None or name.lower() == "localhost":
            return real(host, port, *args, **kwargs)
        try:
            ipaddress.ip_address(name.strip("[]").split("%")[0])
        except ValueError:
            pass
        else:
            return real(host, port, *args, **kwargs)
        lowered = name.lower().rstrip(".")
        if lowered in ("example.com", "example.org", "example.net") or lowered.endswith(
            OFFLINE_NAMES_SUFFIXES
        ):
            return real(OFFLINE_ADDRESS, port, *args, **kwargs)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture(autouse=True)
def sandbox_allowlisted(settings):
    """The sandboxes listen on 127.0.0.1, which the outbound guard refuses unless allowlisted
    (as ``manage.py demo`` asks); tests of refusals set the allowlist themselves."""
    settings.LANTERN_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
