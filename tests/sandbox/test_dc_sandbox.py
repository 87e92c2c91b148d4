"""The Bitbucket Data Center sandbox over its real HTTPS socket: TLS with its private CA, paged
envelopes and limits, 401s, the REST resources Lantern reads, webhooks, OAuth 2.0 application
links, faults and rate limits — and a contract check against the published 9.4 OpenAPI spec."""

import base64
import copy
import hashlib
import json
import ssl
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from jsonschema import Draft4Validator

from sandbox import SandboxServer, World
from sandbox.webhooks import signature
from tests.sandbox.fixtures import DC_TOKEN, dc_world_factory
from tests.sandbox.helpers import Receiver

SPEC = Path("/work/shared/bitbucket-specs/bitbucket-datacenter-9.4-openapi.json")


def trust(server) -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.load_verify_locations(cadata=server.ca_pem)
    return context


def dc_client(server, token: str | None = DC_TOKEN, **kwargs) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(
        base_url=server.api_url, verify=trust(server), headers=headers, timeout=10.0, **kwargs
    )


@pytest.fixture
def client(dc_sandbox):
    with dc_client(dc_sandbox) as client:
        yield client


def a_repo(server, *, empty: bool = False, with_prs: bool = False):
    for repo in server.world.iter_repositories():
        if empty == (repo.mainbranch is None) and (not with_prs or repo.pull_requests):
            return repo
    raise AssertionError("no such repository in the test world")


def repo_path(repo) -> str:
    return f"projects/{repo.project_key}/repos/{repo.slug}"


# -- TLS -----------------------------------------------------------------------------------------


def test_it_serves_https_only_with_a_certificate_from_its_private_ca(dc_sandbox):
    assert dc_sandbox.url.startswith("https://127.0.0.1:")
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{dc_sandbox.api_url}/application-properties", timeout=5.0)
    plain = dc_sandbox.url.replace("https://", "http://")
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{plain}/rest/api/1.0/application-properties", timeout=5.0)
    for host in ("127.0.0.1", "localhost"):
        url = dc_sandbox.url.replace("127.0.0.1", host) + "/rest/api/1.0/application-properties"
        assert httpx.get(url, verify=trust(dc_sandbox), timeout=5.0).status_code == 200


def test_each_sandbox_has_its_own_ca(make_dc_sandbox):
    first, second = make_dc_sandbox(), make_dc_sandbox()
    assert first.ca_pem != second.ca_pem
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{second.api_url}/application-properties", verify=trust(first), timeout=5.0)


# -- instance, auth ----------------------------------------------------------------------------


def test_application_properties_need_no_credential_and_the_version_is_configurable(dc_sandbox):
    with dc_client(dc_sandbox, token=None) as anonymous:
        body = anonymous.get("application-properties").json()
        assert body["version"] == "9.4.1" and body["displayName"] == "Bitbucket"
        assert all(isinstance(value, str) for value in body.values())
        dc_sandbox.api.configure(version="8.19.2")
        assert anonymous.get("application-properties").json()["version"] == "8.19.2"
        # The control API does the same for a sandbox in another process.
        put = anonymous.put(f"{dc_sandbox.url}/_sandbox/dc/settings", json={"version": "10.1.0"})
        assert put.status_code == 200
        latest = f"{dc_sandbox.url}/rest/api/latest/application-properties"
        assert anonymous.get(latest).json()["version"] == "10.1.0"


def test_401_for_a_missing_credential_and_a_missing_permission_alike(dc_sandbox):
    world = dc_sandbox.world
    keys = sorted(world.workspaces[dc_sandbox.api.workspace].projects)
    world.credentials.dc.add_token("one-project", projects=[keys[0]])
    other = next(r for r in world.iter_repositories() if r.project_key != keys[0])
    with dc_client(dc_sandbox, token=None) as anonymous:
        missing = anonymous.get("repos")
    with dc_client(dc_sandbox, token="one-project") as limited:
        forbidden = limited.get(repo_path(other))
        listed = limited.get("repos", params={"limit": 1000}).json()["values"]
    with dc_client(dc_sandbox, token="wrong") as wrong:
        refused = wrong.get("repos")
    assert missing.status_code == forbidden.status_code == refused.status_code == 401
    error = forbidden.json()["errors"][0]
    assert error["message"] == "You are not permitted to access this resource"
    assert error["exceptionName"] == "com.atlassian.bitbucket.AuthorisationException"
    assert missing.json() == forbidden.json()
    assert "Authentication failed" in refused.json()["errors"][0]["message"]
    assert {value["project"]["key"] for value in listed} == {keys[0]}


def test_a_token_also_works_as_basic_auth_with_its_username(dc_sandbox):
    account = dc_sandbox.world.account(dc_sandbox.world.credentials.dc.tokens[DC_TOKEN].account)
    raw = base64.b64encode(f"{account.nickname}:{DC_TOKEN}".encode()).decode()
    with dc_client(dc_sandbox, token=None, auth=None) as client:
        response = client.get("repos", headers={"Authorization": f"Basic {raw}"})
    assert response.status_code == 200


# -- paging --------------------------------------------------------------------------------------


def test_pages_use_the_default_limit_and_continue_from_next_page_start(dc_sandbox, client):
    total = len(dc_sandbox.world.workspaces[dc_sandbox.api.workspace].repositories)
    first = client.get("repos").json()
    assert first["limit"] == 25 and first["start"] == 0 and first["size"] == len(first["values"])
    assert first["isLastPage"] is (total <= 25)
    seen, start = [], 0
    while True:
        page = client.get("repos", params={"start": start, "limit": 5}).json()
        seen += [value["id"] for value in page["values"]]
        if page["isLastPage"]:
            assert "nextPageStart" not in page
            break
        start = page["nextPageStart"]
    assert len(seen) == len(set(seen)) == total


def test_the_instance_caps_the_limit_and_says_so(dc_sandbox, client):
    dc_sandbox.api.configure(max_limit=7)
    page = client.get("repos", params={"limit": 100}).json()
    assert page["limit"] == 7 and page["size"] == 7 and page["nextPageStart"] == 7


def test_short_pages_punish_a_client_that_adds_the_limit(dc_sandbox, client):
    dc_sandbox.api.configure(short_pages=True)
    page = client.get("repos", params={"limit": 5}).json()
    assert page["size"] == 4 and page["nextPageStart"] == 4 and page["limit"] == 5


def test_a_bad_start_or_limit_is_a_400_with_errors(client):
    response = client.get("repos", params={"limit": "many"})
    assert response.status_code == 400 and "errors" in response.json()


# -- projects and repositories -------------------------------------------------------------------


def test_projects_and_their_repositories(dc_sandbox, client):
    projects = client.get("projects").json()["values"]
    keys = [p["key"] for p in projects]
    assert keys == sorted(dc_sandbox.world.workspaces[dc_sandbox.api.workspace].projects)
    assert all(isinstance(p["id"], int) and p["type"] == "NORMAL" for p in projects)
    key = keys[0]
    assert client.get(f"projects/{key.lower()}").json()["key"] == key  # keys: any case
    repos = client.get(f"projects/{key}/repos", params={"limit": 100}).json()["values"]
    assert repos and {r["project"]["key"] for r in repos} == {key}
    filtered = client.get("repos", params={"projectkey": key, "limit": 100}).json()["values"]
    assert [r["id"] for r in filtered] == [r["id"] for r in repos]
    missing = client.get("projects/NOPE/repos")
    assert missing.status_code == 404
    assert missing.json()["errors"][0]["exceptionName"].endswith("NoSuchProjectException")


def test_a_repository_has_links_as_arrays_and_no_default_branch(dc_sandbox, client):
    repo = a_repo(dc_sandbox)
    body = client.get(repo_path(repo)).json()
    assert body["slug"] == repo.slug and isinstance(body["id"], int)
    assert body["public"] is (not repo.is_private) and body["state"] == "AVAILABLE"
    assert body["links"]["self"][0]["href"].endswith(f"/repos/{repo.slug}/browse")
    assert {link["name"] for link in body["links"]["clone"]} == {"http", "ssh"}
    assert "defaultBranch" not in body  # write-only in the spec: /default-branch answers it
    branch = client.get(f"{repo_path(repo)}/default-branch").json()
    assert branch == {
        "id": f"refs/heads/{repo.mainbranch}",
        "displayId": repo.mainbranch,
        "type": "BRANCH",
    }


def test_an_empty_repository_has_no_default_branch_and_no_commits(dc_sandbox, client):
    world = dc_sandbox.world
    project = sorted(world.workspaces[dc_sandbox.api.workspace].projects)[0]
    repo = world.repository_create(
        workspace=dc_sandbox.api.workspace, project=project, name="empty-one"
    )
    missing = client.get(f"{repo_path(repo)}/default-branch")
    assert missing.status_code == 404
    assert missing.json()["errors"][0]["exceptionName"].endswith("NoDefaultBranchException")
    assert client.get(f"{repo_path(repo)}/commits").json()["values"] == []


def test_ids_are_stable_for_equal_worlds(make_dc_sandbox):
    ids = []
    for _ in range(2):
        server = make_dc_sandbox(dc_world_factory())
        with dc_client(server) as client:
            ids.append(
                [
                    (r["slug"], r["id"])
                    for r in client.get("repos", params={"limit": 99}).json()["values"]
                ]
            )
    assert ids[0] == ids[1]


# -- pull requests, commits, files ---------------------------------------------------------------


def test_pull_requests_default_to_open_and_state_all_newest_first(dc_sandbox, client):
    repo = a_repo(dc_sandbox, with_prs=True)
    path = f"{repo_path(repo)}/pull-requests"
    default = client.get(path).json()["values"]
    assert all(pr["state"] == "OPEN" for pr in default)
    every = client.get(path, params={"state": "ALL", "order": "NEWEST", "limit": 100}).json()
    values = every["values"]
    assert len(values) == len(repo.pull_requests)
    updated = [pr["updatedDate"] for pr in values]
    assert updated == sorted(updated, reverse=True)
    assert all(isinstance(stamp, int) and stamp > 10**12 for stamp in updated)  # milliseconds
    pr = values[0]
    assert pr["author"]["role"] == "AUTHOR" and pr["fromRef"]["id"].startswith("refs/heads/")
    assert {pr["state"] for pr in values} <= {"OPEN", "MERGED", "DECLINED"}
    assert all(("closedDate" in pr) == pr["closed"] for pr in values)
    oldest = client.get(path, params={"state": "ALL", "order": "OLDEST", "limit": 100}).json()
    assert [pr["id"] for pr in oldest["values"]] == [pr["id"] for pr in reversed(values)]
    assert client.get(path, params={"state": "SUPERSEDED"}).status_code == 400


def test_commits_walk_back_from_until_and_stop_at_since(dc_sandbox, client):
    repo = a_repo(dc_sandbox)
    history = repo.history(repo.branches[repo.mainbranch])
    path = f"{repo_path(repo)}/commits"
    page = client.get(path, params={"until": f"refs/heads/{repo.mainbranch}", "limit": 100})
    values = page.json()["values"]
    assert [c["id"] for c in values] == [c.hash for c in history]
    first = values[0]
    assert first["authorTimestamp"] == int(history[0].date.timestamp() * 1000)
    assert set(first["author"]) >= {"name", "emailAddress"}
    since = client.get(path, params={"since": history[2].hash, "limit": 100}).json()["values"]
    assert [c["id"] for c in since] == [c.hash for c in history[:2]]
    unknown = client.get(path, params={"until": "no-such-branch"})
    assert unknown.status_code == 404


def test_raw_files_at_a_ref(dc_sandbox, client):
    repo = next(
        r
        for r in dc_sandbox.world.iter_repositories()
        if r.mainbranch and r.read_file(r.resolve(r.mainbranch), "catalog-info.yaml")
    )
    at = f"refs/heads/{repo.mainbranch}"
    response = client.get(f"{repo_path(repo)}/raw/catalog-info.yaml", params={"at": at})
    assert response.status_code == 200
    assert response.content == repo.read_file(repo.resolve(repo.mainbranch), "catalog-info.yaml")
    missing = client.get(f"{repo_path(repo)}/raw/nope.yaml", params={"at": at})
    assert missing.status_code == 404
    assert missing.json()["errors"][0]["exceptionName"].endswith("NoSuchPathException")


# -- webhooks ------------------------------------------------------------------------------------


def test_webhook_crud_and_a_signed_refs_changed_delivery(dc_sandbox, client):
    repo = a_repo(dc_sandbox)
    hooks = f"{repo_path(repo)}/webhooks"
    with Receiver() as receiver:
        body = {
            "name": "Lantern",
            "url": receiver.url,
            "events": ["repo:refs_changed", "pr:opened"],
            "active": True,
            "configuration": {"secret": "s3cret"},
        }
        created = client.post(hooks, json=body)
        assert created.status_code == 200
        hook = created.json()
        assert isinstance(hook["id"], int) and hook["scopeType"] == "repository"
        assert "s3cret" not in created.text
        assert client.get(hooks).json()["values"] == [hook]
        bad = client.post(hooks, json={**body, "events": ["repo:push"]})
        assert bad.status_code == 400 and "errors" in bad.json()
        dc_sandbox.world.commits_push(workspace=repo.workspace, slug=repo.slug, count=2)
        assert dc_sandbox.api.webhooks.wait_idle(5)
        ((headers, raw),) = receiver.deliveries
        headers = {k.lower(): v for k, v in headers.items()}
        assert headers["x-event-key"] == "repo:refs_changed" and headers["x-request-id"]
        assert headers["x-hub-signature"] == signature("s3cret", raw)
        payload = json.loads(raw)
        change = payload["changes"][0]
        assert payload["repository"]["slug"] == repo.slug
        assert change["type"] == "UPDATE" and change["refId"] == f"refs/heads/{repo.mainbranch}"
        assert change["toHash"] == repo.branches[repo.mainbranch]
        updated = client.put(f"{hooks}/{hook['id']}", json={"active": False}).json()
        assert updated["active"] is False
        assert client.delete(f"{hooks}/{hook['id']}").status_code == 204
        assert client.get(f"{hooks}/{hook['id']}").status_code == 404


# -- OAuth 2.0 application links -----------------------------------------------------------------

REDIRECT = "https://lantern.example/org/bitbucket-dc/1/callback"


def _authorize(server, redirect_uri=REDIRECT, verifier: str = "v" * 50) -> str:
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    params = {
        "client_id": "lantern",
        "redirect_uri": redirect_uri,
        "response_type": "code",
        "state": "xyz",
        "code_challenge": challenge.decode().rstrip("="),
        "code_challenge_method": "S256",
    }
    url = f"{server.url}/rest/oauth2/latest/authorize"
    consent = httpx.get(url, params=params, verify=trust(server))
    assert consent.status_code == 200 and 'value="allow"' in consent.text
    response = httpx.post(url, data={**params, "decision": "allow"}, verify=trust(server))
    assert response.status_code == 302
    query = parse_qs(urlsplit(response.headers["Location"]).query)
    assert query["state"] == ["xyz"]
    return query["code"][0]


def _token(server, **form) -> httpx.Response:
    form = {"client_id": "lantern", "client_secret": "shh", **form}
    return httpx.post(f"{server.url}/rest/oauth2/latest/token", data=form, verify=trust(server))


def test_an_application_link_grants_rotating_tokens(dc_sandbox):
    dc_sandbox.world.credentials.dc.add_client(
        client_id="lantern", secret="shh", redirect_uri=REDIRECT
    )
    code = _authorize(dc_sandbox)
    grant = dict(grant_type="authorization_code", code=code, redirect_uri=REDIRECT)
    tokens = _token(dc_sandbox, **grant, code_verifier="v" * 50).json()
    assert tokens["token_type"] == "bearer" and tokens["expires_in"] > 0
    with dc_client(dc_sandbox, token=tokens["access_token"]) as client:
        assert client.get("repos").status_code == 200
    renewed = _token(
        dc_sandbox, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
    ).json()
    assert renewed["refresh_token"] != tokens["refresh_token"]
    reused = _token(dc_sandbox, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    dc_sandbox.world.credentials.dc.expire_access_tokens()
    with dc_client(dc_sandbox, token=renewed["access_token"]) as client:
        assert client.get("repos").status_code == 401


def test_a_redirect_uri_mismatch_is_invalid_grant(dc_sandbox):
    dc_sandbox.world.credentials.dc.add_client(
        client_id="lantern", secret="shh", redirect_uri="https://elsewhere.example/cb"
    )
    code = _authorize(dc_sandbox)
    response = _token(
        dc_sandbox,
        grant_type="authorization_code",
        code=code,
        redirect_uri=REDIRECT,
        code_verifier="v" * 50,
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert "redirect" in response.json()["error_description"]
    wrong_secret = _token(dc_sandbox, client_secret="nope", grant_type="refresh_token")
    assert wrong_secret.status_code == 401 and wrong_secret.json()["error"] == "invalid_client"


# -- faults, rate limits, request log, control ---------------------------------------------------


def test_faults_and_the_request_log_come_from_the_shared_traffic_module(dc_sandbox, client):
    control = f"{dc_sandbox.url}/_sandbox"
    put = client.put(f"{control}/faults", json={"script": ["503", "500", None, "malformed"]})
    assert put.json()["config"]["path_pattern"] == "^/rest/api/"
    assert client.get("repos").status_code == 503
    failed = client.get("repos")
    assert failed.status_code == 500 and failed.json()["errors"][0]["message"]
    # ``None``: no fault before the third request; a body fault waits for the next good body.
    broken = client.get("repos")
    assert broken.status_code == 200
    with pytest.raises(ValueError):
        broken.json()
    assert client.get("repos").json()["values"]
    log = client.get(f"{control}/requests").json()
    faults = [entry["fault"] for entry in log["requests"] if entry["path"] == "/rest/api/1.0/repos"]
    assert faults == ["503", "500", "malformed", None]
    assert log["counts"]["GET /rest/api/1.0/repos"] == 4


def test_the_opt_in_rate_limit_answers_429_with_retry_after(dc_sandbox, client):
    dc_sandbox.api.rate_limits.configure(limits={"api": 2}, retry_after=3)
    assert [client.get("repos").status_code for _ in range(3)] == [200, 200, 429]
    limited = client.get("repos")
    assert limited.headers["Retry-After"] == "3" and "errors" in limited.json()
    # Anonymous resources are not counted.
    assert client.get("application-properties").status_code == 200


def test_the_control_api_adds_tokens_and_drives_the_world(dc_sandbox, client):
    control = f"{dc_sandbox.url}/_sandbox"
    keys = sorted(dc_sandbox.world.workspaces[dc_sandbox.api.workspace].projects)
    added = client.post(f"{control}/dc/tokens", json={"token": "t2", "projects": [keys[1]]})
    assert added.status_code == 201 and added.json()["projects"] == [keys[1]]
    created = client.post(
        f"{control}/repositories",
        json={
            "workspace": dc_sandbox.api.workspace,
            "project": keys[1],
            "name": "brand-new",
            "files": {"README.md": "# new"},
        },
    )
    assert created.status_code == 201
    with dc_client(dc_sandbox, token="t2") as limited:
        assert limited.get(f"projects/{keys[1]}/repos/brand-new").status_code == 200


# -- the management command ----------------------------------------------------------------------


def test_the_management_command_starts_an_https_sandbox_and_prints_ca_and_token(
    monkeypatch, tmp_path
):
    from io import StringIO

    from django.core.management import call_command

    monkeypatch.setattr(SandboxServer, "serve_forever", SandboxServer.stop)
    out = StringIO()
    ca_file = tmp_path / "ca.pem"
    call_command(
        "bitbucket_sandbox",
        "--dc",
        "--port",
        "0",
        "--repos",
        "5",
        "--ca-file",
        str(ca_file),
        stdout=out,
    )
    text = out.getvalue()
    assert "Bitbucket Data Center sandbox on https://127.0.0.1:" in text
    assert f"CA certificate (PEM): {ca_file}" in text
    assert "personal access token: sandbox-token" in text
    assert ca_file.read_text().startswith("-----BEGIN CERTIFICATE-----")


# -- contract ------------------------------------------------------------------------------------


def _spec() -> dict:
    spec = json.loads(SPEC.read_text())
    paths = copy.deepcopy(spec["paths"])
    # Real error bodies carry ``"context": null`` where the spec says string.
    for operation in (op for item in paths.values() for op in item.values()):
        for response in operation.get("responses", {}).values():
            for content in response.get("content", {}).values():
                errors = content.get("schema", {}).get("properties", {}).get("errors")
                if errors:
                    errors["items"] = {"$ref": "#/components/schemas/RestErrorMessage"}
    components = copy.deepcopy(spec["components"])
    context = components["schemas"]["RestErrorMessage"]["properties"]["context"]
    context["type"] = ["string", "null"]
    # ``links`` is write-only on repositories and projects in the spec; real responses carry
    # them (arrays of {href}), which the open ``object`` schema accepts as it is.
    return {"paths": paths, "components": components}


def validate_response(spec: dict, path: str, document, status: str = "200") -> None:
    operation = spec["paths"][path]["get"]
    content = operation["responses"][status]["content"]
    schema = next(iter(content.values()))["schema"]
    validator = Draft4Validator({**schema, "components": spec["components"]})
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:10]
    )


@pytest.mark.skipif(not SPEC.exists(), reason="the Bitbucket Data Center spec is not present")
def test_responses_validate_against_the_published_spec(dc_sandbox, client):
    spec = _spec()
    repo = a_repo(dc_sandbox, with_prs=True)
    base = "/api/latest/projects/{projectKey}/repos/{repositorySlug}"
    checks = [
        ("/api/latest/application-properties", "application-properties", {}),
        ("/api/latest/projects", "projects", {}),
        ("/api/latest/repos", "repos", {"limit": 100}),
        ("/api/latest/projects/{projectKey}/repos", f"projects/{repo.project_key}/repos", {}),
        (base, repo_path(repo), {}),
        (f"{base}/default-branch", f"{repo_path(repo)}/default-branch", {}),
        (f"{base}/pull-requests", f"{repo_path(repo)}/pull-requests", {"state": "ALL"}),
        (f"{base}/commits", f"{repo_path(repo)}/commits", {}),
    ]
    for spec_path, path, params in checks:
        response = client.get(path, params=params)
        assert response.status_code == 200, path
        validate_response(spec, spec_path, response.json())
    missing = client.get(f"{repo_path(repo)}/raw/nope.txt")
    validate_response(spec, f"{base}/raw/{{path}}", missing.json(), "404")


def test_a_world_with_several_workspaces_serves_the_chosen_one(make_dc_sandbox):
    world = World.generate(5, workspaces=2, projects=2, repos=6)
    world.credentials.dc.add_token("t")
    second = list(world.workspaces)[1]
    server = make_dc_sandbox(world, workspace=second)
    with dc_client(server, token="t") as client:
        repos = client.get("repos").json()["values"]
    assert {r["slug"] for r in repos} == set(world.workspaces[second].repositories)
