"""Hook registration, secret rotation and removal, verified against the Cloud sandbox's hook list
(and, for Data Center, against a recorded conversation)."""

import hashlib
import hmac

import pytest

from integrations import services
from integrations.providers import registry
from integrations.providers.bitbucket_cloud import webhooks as cloud_webhooks
from integrations.providers.bitbucket_dc import webhooks as dc_webhooks
from tests.sandbox.fixtures import SANDBOX_SCOPES, SANDBOX_TOKEN
from tests.sandbox.helpers import Receiver, first_repo

WS = "acme"


def cloud_client(server, token: str = SANDBOX_TOKEN):
    connector = services.connector_create(
        name=f"cloud-{token}",
        provider="bitbucket_cloud",
        auth_kind="workspace_access_token",
        base_url=server.api_url,
        secrets={"token": token},
    )
    integration = services.integration_create(
        connector=connector, name=f"acme-{token}", target={"workspace": WS}
    )
    return registry.for_integration(integration).client


def hooks(server) -> list:
    return sorted(server.api.hooks.values(), key=lambda hook: hook.created_at)


@pytest.mark.django_db
def test_cloud_registers_one_workspace_hook_with_the_events_and_secret(cloud_sandbox):
    client = cloud_client(cloud_sandbox)
    (created,) = cloud_webhooks.ensure_webhook(
        client, workspace=WS, url="https://lantern.example/webhooks/bitbucket-cloud/1", secret="s1"
    )
    (hook,) = hooks(cloud_sandbox)
    assert created["subject_type"] == "workspace" and created["secret_set"] is True
    assert (hook.url, hook.secret, hook.repository) == (created["url"], "s1", None)
    assert hook.events == sorted(cloud_webhooks.EVENTS)


@pytest.mark.django_db
def test_cloud_ensure_is_idempotent_and_rotates_the_secret_in_place(cloud_sandbox):
    client = cloud_client(cloud_sandbox)
    url = "https://lantern.example/webhooks/bitbucket-cloud/1"
    cloud_webhooks.ensure_webhook(client, workspace=WS, url=url, secret="old")
    (before,) = hooks(cloud_sandbox)
    cloud_webhooks.ensure_webhook(client, workspace=WS, url=url, secret="new")
    (after,) = hooks(cloud_sandbox)
    assert after.uuid == before.uuid and after.secret == "new"


@pytest.mark.django_db
def test_cloud_rotated_secret_signs_the_next_delivery(cloud_sandbox):
    client = cloud_client(cloud_sandbox)
    repo = first_repo(cloud_sandbox)
    with Receiver() as receiver:
        cloud_webhooks.ensure_webhook(client, workspace=WS, url=receiver.url, secret="old")
        cloud_webhooks.ensure_webhook(client, workspace=WS, url=receiver.url, secret="new")
        cloud_sandbox.world.commits_push(workspace=WS, slug=repo.slug)
        assert cloud_sandbox.api.webhooks.wait_idle(5)
    headers, body = receiver.deliveries[0]
    expected = "sha256=" + hmac.new(b"new", body, hashlib.sha256).hexdigest()
    assert headers["X-Hub-Signature"] == expected


@pytest.mark.django_db
def test_cloud_duplicate_hooks_for_our_url_are_collapsed(cloud_sandbox):
    client = cloud_client(cloud_sandbox)
    url = "https://lantern.example/webhooks/bitbucket-cloud/1"
    for _ in range(2):
        client.http.request(
            "POST", f"workspaces/{WS}/hooks", json={"url": url, "events": ["repo:push"]}
        )
    client.http.request(
        "POST",
        f"workspaces/{WS}/hooks",
        json={"url": "https://ci.example/hook", "events": ["repo:push"]},
    )
    cloud_webhooks.ensure_webhook(client, workspace=WS, url=url, secret="s")
    assert sorted(hook.url for hook in hooks(cloud_sandbox)) == ["https://ci.example/hook", url]


@pytest.mark.django_db
def test_cloud_falls_back_to_repository_hooks_without_workspace_access(cloud_sandbox):
    repo = first_repo(cloud_sandbox)
    cloud_sandbox.world.credentials.add_access_token(
        "repo-token", workspace=WS, repository=repo.slug, scopes=SANDBOX_SCOPES
    )
    client = cloud_client(cloud_sandbox, "repo-token")
    url = "https://lantern.example/webhooks/bitbucket-cloud/1"
    (created,) = cloud_webhooks.ensure_webhook(
        client, workspace=WS, url=url, secret="s", repositories=[repo.slug]
    )
    (hook,) = hooks(cloud_sandbox)
    assert created["subject_type"] == "repository" and hook.repository == repo.uuid


@pytest.mark.django_db
def test_cloud_remove_deletes_only_our_hooks(cloud_sandbox):
    client = cloud_client(cloud_sandbox)
    url = "https://lantern.example/webhooks/bitbucket-cloud/1"
    cloud_webhooks.ensure_webhook(client, workspace=WS, url=url, secret="s")
    client.http.request(
        "POST",
        f"workspaces/{WS}/hooks",
        json={"url": "https://ci.example/hook", "events": ["repo:push"]},
    )
    assert cloud_webhooks.remove_webhook(client, workspace=WS, url=url) == 1
    assert [hook.url for hook in hooks(cloud_sandbox)] == ["https://ci.example/hook"]


# -- Data Center: against a recorded conversation --------------------------------------------------


class RecordedDataCenter:
    """A stand-in for the Data Center client's ``http`` (a ProviderHttp on ``rest/api/1.0``)
    holding hooks the way the webhooks REST resource does."""

    def __init__(self, hooks=()):
        self.hooks = {hook["id"]: hook for hook in hooks}
        self.calls: list[tuple[str, str]] = []
        self.http = self

    def iter_start_pages(self, path, **kwargs):
        self.calls.append(("GET", path))
        yield {"values": list(self.hooks.values()), "isLastPage": True, "start": 0, "size": 0}

    def request(self, method, path, *, json=None, not_found_ok=False):
        self.calls.append((method, path))
        if method == "POST":
            hook = {"id": max(self.hooks, default=0) + 1, **json}
            self.hooks[hook["id"]] = hook
        elif method == "PUT":
            hook_id = int(path.rsplit("/", 1)[1])
            hook = self.hooks[hook_id] = {"id": hook_id, **json}
        else:
            hook = self.hooks.pop(int(path.rsplit("/", 1)[1]))
        return _Response(hook)


class _Response:
    def __init__(self, body):
        self.body = body

    def json(self):
        return self.body


def test_dc_registers_a_project_hook_with_the_events_and_secret():
    server = RecordedDataCenter()
    hook = dc_webhooks.ensure_webhook(server, project_key="PAY", url="https://l/x", secret="s1")
    assert server.calls == [("GET", "projects/PAY/webhooks"), ("POST", "projects/PAY/webhooks")]
    assert hook["events"] == sorted(dc_webhooks.EVENTS)
    assert hook["configuration"] == {"secret": "s1"} and hook["active"] is True


def test_dc_ensure_updates_and_rotates_the_existing_hook():
    server = RecordedDataCenter([{"id": 7, "url": "https://l/x", "events": ["repo:refs_changed"]}])
    dc_webhooks.ensure_webhook(
        server, project_key="PAY", repository_slug="payments-api", url="https://l/x", secret="new"
    )
    assert server.calls[-1] == ("PUT", "projects/PAY/repos/payments-api/webhooks/7")
    assert server.hooks[7]["configuration"]["secret"] == "new"
    assert list(server.hooks) == [7]


def test_dc_remove_deletes_only_our_hooks():
    server = RecordedDataCenter([{"id": 1, "url": "https://l/x"}, {"id": 2, "url": "https://ci/y"}])
    assert dc_webhooks.remove_webhook(server, project_key="PAY", url="https://l/x") == 1
    assert list(server.hooks) == [2]
