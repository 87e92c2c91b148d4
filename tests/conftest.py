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
