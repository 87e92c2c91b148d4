"""Webhook subscriptions and deliveries, and the ``/_sandbox`` control API."""

import hashlib
import hmac
import json

import httpx

from sandbox import control
from sandbox.routing import Request
from sandbox.world import format_time
from tests.sandbox.helpers import Receiver, api_client, first_repo

WS = "acme"


def _hook(client, path: str, url: str, events, **extra) -> dict:
    response = client.post(path, json={"url": url, "events": events, **extra})
    assert response.status_code == 201, response.text
    return response.json()


# -- webhooks ------------------------------------------------------------------------------------


def test_a_push_is_delivered_signed_with_bitbuckets_headers(cloud_sandbox):
    world = cloud_sandbox.world
    repo = first_repo(cloud_sandbox)
    old_tip = repo.branches[repo.mainbranch]
    with Receiver() as receiver, api_client(cloud_sandbox) as client:
        hook = _hook(
            client,
            f"repositories/{WS}/{repo.slug}/hooks",
            receiver.url,
            ["repo:push"],
            description="lantern",
            secret="s3cret",
        )
        commits = world.commits_push(workspace=WS, slug=repo.slug, count=7)
        assert cloud_sandbox.api.webhooks.wait_idle(5)
    assert hook["secret_set"] is True and "secret" not in hook
    assert hook["subject_type"] == "repository" and hook["active"] is True
    headers, body = receiver.deliveries[0]
    expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert headers["X-Hub-Signature"] == expected
    assert headers["X-Event-Key"] == "repo:push"
    assert headers["X-Hook-UUID"] == hook["uuid"]
    assert headers["X-Attempt-Number"] == "1"
    assert headers["X-Request-UUID"]
    assert headers["Content-Type"] == "application/json"
    payload = json.loads(body)
    assert set(payload) == {"actor", "repository", "push"}
    change = payload["push"]["changes"][0]
    assert change["new"]["name"] == repo.mainbranch
    assert change["new"]["target"]["hash"] == commits[-1].hash
    assert change["old"]["target"]["hash"] == old_tip
    assert (change["created"], change["closed"], change["forced"]) == (False, False, False)
    assert change["truncated"] is True and len(change["commits"]) == 5
    assert change["commits"][0]["hash"] == commits[-1].hash
    assert set(change["links"]) == {"html", "diff", "commits"}
    assert payload["repository"]["uuid"] == repo.uuid


def test_a_workspace_hook_hears_pull_requests_and_repository_edits(cloud_sandbox):
    world = cloud_sandbox.world
    repo = first_repo(cloud_sandbox)
    old_slug = repo.slug
    events = ["pullrequest:created", "pullrequest:fulfilled", "repo:updated"]
    with Receiver() as receiver, api_client(cloud_sandbox) as client:
        hook = _hook(client, f"workspaces/{WS}/hooks", receiver.url, events)
        pr = world.pullrequest_open(
            workspace=WS, slug=repo.slug, title="Add a catalog file", source="feature/catalog"
        )
        world.pullrequest_merge(workspace=WS, slug=repo.slug, pr_id=pr.id)
        world.repository_rename(workspace=WS, slug=repo.slug, name="renamed-repo")
        assert cloud_sandbox.api.webhooks.wait_idle(5)
    assert hook["subject_type"] == "workspace" and "secret_set" in hook
    keys = [headers["X-Event-Key"] for headers, _ in receiver.deliveries]
    assert keys == events
    assert "X-Hub-Signature" not in receiver.deliveries[0][0]
    created, fulfilled, updated = (json.loads(body) for _, body in receiver.deliveries)
    assert set(created) == {"actor", "pullrequest", "repository"}
    assert created["pullrequest"]["state"] == "OPEN"
    assert fulfilled["pullrequest"]["state"] == "MERGED"
    assert fulfilled["pullrequest"]["merge_commit"]["hash"] == pr.merge_commit[:12]
    assert updated["changes"]["slug"] == {"old": old_slug, "new": "renamed-repo"}
    assert updated["repository"]["full_name"] == f"{WS}/renamed-repo"


def test_deliveries_are_retried_on_5xx_twice_more(cloud_sandbox):
    repo = first_repo(cloud_sandbox)
    with Receiver(statuses=[500, 503]) as flaky, Receiver(statuses=[500] * 3) as broken:
        with Receiver(statuses=[410]) as gone, api_client(cloud_sandbox) as client:
            for receiver in (flaky, broken, gone):
                _hook(client, f"repositories/{WS}/{repo.slug}/hooks", receiver.url, ["repo:push"])
            cloud_sandbox.world.commits_push(workspace=WS, slug=repo.slug)
            assert cloud_sandbox.api.webhooks.wait_idle(10)
    attempts = [h["X-Attempt-Number"] for h, _ in flaky.deliveries]
    assert attempts == ["1", "2", "3"]
    assert len({h["X-Request-UUID"] for h, _ in flaky.deliveries}) == 1
    assert len(broken.deliveries) == 3 and len(gone.deliveries) == 1
    states = {d.url: d.state for d in cloud_sandbox.api.webhooks.deliveries()}
    assert states == {flaky.url: "delivered", broken.url: "failed", gone.url: "failed"}


def test_inactive_or_unsubscribed_hooks_get_nothing(cloud_sandbox):
    repo = first_repo(cloud_sandbox)
    path = f"repositories/{WS}/{repo.slug}/hooks"
    with Receiver() as receiver, api_client(cloud_sandbox) as client:
        _hook(client, path, receiver.url, ["repo:push"], active=False)
        _hook(client, path, receiver.url, ["pullrequest:created"])
        cloud_sandbox.world.commits_push(workspace=WS, slug=repo.slug)
        assert cloud_sandbox.api.webhooks.wait_idle(5)
    assert receiver.deliveries == []


def test_hooks_are_listed_read_updated_and_deleted(cloud_sandbox):
    repo = first_repo(cloud_sandbox)
    path = f"repositories/{WS}/{repo.slug}/hooks"
    with api_client(cloud_sandbox) as client:
        hook = _hook(client, path, "http://127.0.0.1:9/hook", ["repo:push"], secret="x")
        listed = client.get(path).json()
        updated = client.put(f"{path}/{hook['uuid']}", json={"active": False}).json()
        fetched = client.get(f"{path}/{hook['uuid']}").json()
        deleted = client.delete(f"{path}/{hook['uuid']}")
        gone = client.get(f"{path}/{hook['uuid']}")
        bad_event = client.post(path, json={"url": "http://x.test/", "events": ["repo:nope"]})
        no_url = client.post(path, json={"events": ["repo:push"]})
    assert [h["uuid"] for h in listed["values"]] == [hook["uuid"]]
    assert updated["active"] is False and fetched["active"] is False
    assert fetched["secret_set"] is True
    assert deleted.status_code == 204 and gone.status_code == 404
    assert bad_event.status_code == no_url.status_code == 400


def test_hooks_need_the_webhook_scope(cloud_sandbox):
    cloud_sandbox.world.credentials.add_access_token("no-hooks", workspace=WS)
    repo = first_repo(cloud_sandbox)
    with api_client(cloud_sandbox, token="no-hooks") as client:
        response = client.get(f"repositories/{WS}/{repo.slug}/hooks")
    assert response.status_code == 200  # the default token scopes include webhook
    cloud_sandbox.world.credentials.add_access_token(
        "read-only", workspace=WS, scopes=["repository"]
    )
    with api_client(cloud_sandbox, token="read-only") as client:
        response = client.get(f"repositories/{WS}/{repo.slug}/hooks")
    assert response.status_code == 403 and "webhook" in response.json()["error"]["message"]


# -- control API ---------------------------------------------------------------------------------


def test_control_push_bumps_updated_on_for_incremental_syncs(cloud_sandbox):
    repo = first_repo(cloud_sandbox)
    latest = max(r.updated_on for r in cloud_sandbox.world.iter_repositories())
    control_url = f"{cloud_sandbox.url}/_sandbox/repositories/{WS}/{repo.slug}/push"
    pushed = httpx.post(control_url, json={"count": 2, "message": "Bump"})
    with api_client(cloud_sandbox) as client:
        changed = client.get(
            f"repositories/{WS}", params={"q": f"updated_on > {format_time(latest)}"}
        ).json()
    assert pushed.status_code == 201 and len(pushed.json()["commits"]) == 2
    assert [v["uuid"] for v in changed["values"]] == [repo.uuid]


def test_control_repository_lifecycle_and_pull_requests(cloud_sandbox):
    base = f"{cloud_sandbox.url}/_sandbox"
    created = httpx.post(
        f"{base}/repositories",
        json={
            "workspace": WS,
            "project": "PLAT",
            "name": "fresh-service",
            "files": {"catalog-info.yaml": "kind: Component\n"},
        },
    )
    renamed = httpx.patch(f"{base}/repositories/{WS}/fresh-service", json={"name": "Fresh API"})
    pr = httpx.post(
        f"{base}/repositories/{WS}/fresh-api/pullrequests",
        json={"title": "Tweak", "source": "feature/tweak", "close_source_branch": True},
    )
    merged = httpx.post(f"{base}/repositories/{WS}/fresh-api/pullrequests/1/merge", json={})
    commented = httpx.post(
        f"{base}/repositories/{WS}/fresh-api/pullrequests/1/comments", json={"content": "LGTM"}
    )
    repo = cloud_sandbox.world.repository(WS, "fresh-api")
    with api_client(cloud_sandbox) as client:
        document = client.get(f"repositories/{WS}/fresh-api").json()
        old = client.get(f"repositories/{WS}/fresh-service")
        prs = client.get(f"repositories/{WS}/fresh-api/pullrequests?state=MERGED").json()
    deleted = httpx.delete(f"{base}/repositories/{WS}/fresh-api")
    assert created.status_code == 201 and created.json()["mainbranch"] == "main"
    assert renamed.json()["slug"] == "fresh-api" and document["name"] == "Fresh API"
    assert old.status_code == 404
    assert pr.status_code == 201 and merged.json()["state"] == "MERGED"
    assert "feature/tweak" not in repo.branches  # closed with the merge
    assert commented.status_code == 201
    assert prs["values"][0]["merge_commit"]["hash"] == merged.json()["merge_commit"][:12]
    assert prs["values"][0]["comment_count"] == 1
    assert deleted.status_code == 204
    assert "fresh-api" not in cloud_sandbox.world.workspaces[WS].repositories


def test_control_faults_limits_logs_and_deliveries(cloud_sandbox):
    base = f"{cloud_sandbox.url}/_sandbox"
    assert httpx.put(f"{base}/faults", json={"script": ["503"]}).status_code == 200
    with api_client(cloud_sandbox) as client:
        assert client.get(f"repositories/{WS}").status_code == 503
        assert client.get(f"repositories/{WS}").status_code == 200
        httpx.put(f"{base}/rate-limits", json={"limits": {"api-repositories": 0}})
        assert client.get(f"repositories/{WS}").status_code == 429
        httpx.delete(f"{base}/rate-limits")
        httpx.put(f"{base}/rate-limits", json={"limits": {"api-repositories": 1000}})
        assert client.get(f"repositories/{WS}").status_code == 200
    log = httpx.get(f"{base}/requests").json()
    assert log["counts"]["GET /2.0/repositories/{workspace}"] == 4
    assert [r["status"] for r in log["requests"] if r["path"] == f"/2.0/repositories/{WS}"] == [
        503,
        200,
        429,
        200,
    ]
    api_calls = [r for r in log["requests"] if r["path"].startswith("/2.0/")]
    assert [r["credential"] for r in api_calls] == [None] + ["workspace-token-1"] * 3  # 503 first
    assert httpx.delete(f"{base}/requests").status_code == 204
    assert httpx.get(f"{base}/requests").json()["total"] == 1  # the GET just above
    assert httpx.get(f"{base}/faults").json()["injected"] == {"503": 1}
    assert httpx.get(f"{base}/deliveries", params={"wait": 1}).json() == {
        "idle": True,
        "deliveries": [],
    }


def test_control_credentials_settings_and_clock(cloud_sandbox):
    base = f"{cloud_sandbox.url}/_sandbox"
    member = cloud_sandbox.world.account(cloud_sandbox.world.workspaces[WS].members[0])
    added = httpx.post(
        f"{base}/credentials/access-tokens",
        json={"token": "via-control", "workspace": WS, "scopes": ["repository"]},
    )
    httpx.post(
        f"{base}/credentials/app-passwords",
        json={"username": member.nickname, "password": "pw"},
    )
    settings = httpx.put(f"{base}/settings", json={"app_passwords_enabled": True}).json()
    clock = httpx.post(f"{base}/clock", json={"advance": 60}).json()
    with api_client(cloud_sandbox, token="via-control") as client:
        assert client.get(f"repositories/{WS}").status_code == 200
    app = httpx.get(f"{cloud_sandbox.api_url}/repositories/{WS}", auth=(member.nickname, "pw"))
    bad = httpx.put(f"{base}/settings", json={"nope": 1})
    assert added.status_code == 201 and added.json()["kind"] == "workspace_token"
    assert settings["app_passwords_enabled"] is True and clock["now"]
    assert app.status_code == 200
    assert bad.status_code == 400


def test_the_control_api_answers_loopback_callers_only(cloud_sandbox):
    route, params = cloud_sandbox.api.router.match("GET", "/_sandbox/world")
    request = Request(
        method="GET",
        path="/_sandbox/world",
        query=[],
        headers={},
        body=b"",
        client="10.1.2.3",
        host="sandbox",
        params=params,
    )
    assert control.dispatch(route, request).status == 403
