"""The Bitbucket Cloud sandbox over a real socket: paging, BBQL, sort, fields, source, auth,
OAuth, rate limits and injected faults."""

import base64
import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from sandbox.world import format_time
from tests.sandbox.fixtures import SANDBOX_TOKEN
from tests.sandbox.helpers import all_pages, api_client, first_repo

WS = "acme"


def basic(login: str, secret: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{login}:{secret}".encode()).decode()}


# -- envelope and paging -------------------------------------------------------------------------


def test_repositories_page_to_the_end_without_duplicates(cloud_sandbox):
    with api_client(cloud_sandbox) as client:
        pages = all_pages(client, f"repositories/{WS}", params={"pagelen": 7})
    values = [repo for page in pages for repo in page["values"]]
    uuids = [repo["uuid"] for repo in values]
    assert len(uuids) == len(set(uuids)) == pages[0]["size"] == 24
    assert [page["page"] for page in pages] == [1, 2, 3, 4]
    assert all(page["pagelen"] == 7 for page in pages)
    assert pages[0]["next"].startswith(cloud_sandbox.url + "/2.0/repositories/acme?")
    assert "previous" not in pages[0] and pages[1]["previous"]
    assert "next" not in pages[-1]
    assert all(uuid.startswith("{") and uuid.endswith("}") for uuid in uuids)


def test_next_links_are_built_from_the_host_the_client_used(cloud_sandbox):
    port = cloud_sandbox.url.rsplit(":", 1)[1]
    with httpx.Client(headers={"Authorization": f"Bearer {SANDBOX_TOKEN}"}) as client:
        page = client.get(f"http://localhost:{port}/2.0/repositories/{WS}").json()
    assert page["next"].startswith(f"http://localhost:{port}/2.0/")


def test_default_pagelen_is_ten_and_each_endpoint_has_its_maximum(cloud_sandbox):
    repo = first_repo(cloud_sandbox, with_prs=True)
    with api_client(cloud_sandbox) as client:
        assert client.get(f"repositories/{WS}").json()["pagelen"] == 10
        assert client.get(f"repositories/{WS}", params={"pagelen": 100}).status_code == 200
        too_many = client.get(f"repositories/{WS}", params={"pagelen": 101})
        prs = f"repositories/{WS}/{repo.slug}/pullrequests"
        assert client.get(prs, params={"pagelen": 50}).status_code == 200
        pr_too_many = client.get(prs, params={"pagelen": 51})
    assert too_many.status_code == pr_too_many.status_code == 400
    assert pr_too_many.json() == {
        "type": "error",
        "error": {"message": "Invalid pagelen", "detail": "pagelen must be between 1 and 50"},
    }


def test_repositories_are_found_by_uuid_as_well_as_slug(cloud_sandbox):
    repo = first_repo(cloud_sandbox)
    with api_client(cloud_sandbox) as client:
        by_uuid = client.get(f"repositories/{WS}/{repo.uuid}").json()
        by_uuid_only = client.get(f"repositories/%7B%7D/{repo.uuid}").json()
    assert by_uuid["slug"] == by_uuid_only["slug"] == repo.slug


def test_an_empty_repository_has_a_null_mainbranch(cloud_sandbox):
    world = cloud_sandbox.world
    world.repository_create(workspace=WS, project="PLAT", name="brand-new")
    with api_client(cloud_sandbox) as client:
        document = client.get(f"repositories/{WS}/brand-new").json()
        commits = client.get(f"repositories/{WS}/brand-new/commits/main")
    assert document["mainbranch"] is None
    assert commits.status_code == 404


# -- q and sort ----------------------------------------------------------------------------------


def test_bbql_filters_on_nested_fields_with_or_and_parentheses(cloud_sandbox):
    q = '(project.key = "PLAT" OR project.key = "PAY") AND name ~ "-"'
    with api_client(cloud_sandbox) as client:
        values = [v for p in all_pages(client, f"repositories/{WS}", {"q": q}) for v in p["values"]]
    expected = {
        r.uuid for r in cloud_sandbox.world.iter_repositories() if r.project_key in ("PLAT", "PAY")
    }
    assert {v["uuid"] for v in values} == expected


def test_bbql_compares_unquoted_and_quoted_datetimes(cloud_sandbox):
    repos = sorted(cloud_sandbox.world.iter_repositories(), key=lambda r: r.updated_on)
    boundary = repos[-5].updated_on
    expected = {r.uuid for r in repos[-4:]}
    with api_client(cloud_sandbox) as client:
        for literal in (format_time(boundary), f'"{format_time(boundary)}"'):
            page = client.get(f"repositories/{WS}", params={"q": f"updated_on > {literal}"})
            assert {v["uuid"] for v in page.json()["values"]} == expected
        offset = boundary.astimezone().isoformat()  # the same instant, another offset
        page = client.get(f"repositories/{WS}", params={"q": f"updated_on > {offset}"})
    assert {v["uuid"] for v in page.json()["values"]} == expected


@pytest.mark.parametrize(
    "q",
    ["name = unquoted", "project.key =", '(name = "x"', 'nosuchfield = "x"', 'name >> "x"'],
)
def test_invalid_queries_are_400s(cloud_sandbox, q):
    with api_client(cloud_sandbox) as client:
        response = client.get(f"repositories/{WS}", params={"q": q})
    assert response.status_code == 400
    assert response.json()["type"] == "error"


def test_sort_ascending_and_descending(cloud_sandbox):
    with api_client(cloud_sandbox) as client:
        for field in ("updated_on", "created_on", "name"):
            up = client.get(f"repositories/{WS}", params={"sort": field, "pagelen": 100}).json()
            down = client.get(
                f"repositories/{WS}", params={"sort": f"-{field}", "pagelen": 100}
            ).json()
            values = [v[field] for v in up["values"]]
            assert values == sorted(values)
            assert [v[field] for v in down["values"]] == sorted(values, reverse=True)


# -- fields --------------------------------------------------------------------------------------


def test_fields_removes_keeps_only_and_wildcards(cloud_sandbox):
    repo = first_repo(cloud_sandbox)
    with api_client(cloud_sandbox) as client:
        no_links = client.get(f"repositories/{WS}/{repo.slug}", params={"fields": "-links"})
        empty_links = client.get(f"repositories/{WS}/{repo.slug}", params={"fields": "-links.*"})
        only = client.get(f"repositories/{WS}", params={"fields": "values.uuid,values.slug,next"})
    assert "links" not in no_links.json() and no_links.json()["slug"] == repo.slug
    assert empty_links.json()["links"] == {}
    assert set(only.json()) == {"values", "next"}
    assert all(set(v) == {"uuid", "slug"} for v in only.json()["values"])


def test_pull_request_lists_omit_reviewers_unless_asked(cloud_sandbox):
    repo = first_repo(cloud_sandbox, with_prs=True)
    pr = next(iter(repo.pull_requests.values()))
    path = f"repositories/{WS}/{repo.slug}/pullrequests"
    states = [("state", s) for s in ("OPEN", "MERGED", "DECLINED", "SUPERSEDED")]
    with api_client(cloud_sandbox) as client:
        plain = client.get(path, params=states).json()["values"]
        plus = client.get(path, params=[*states, ("fields", "+values.reviewers")]).json()
        short = client.get(path, params=[*states, ("fields", "+reviewers")]).json()
        ids = client.get(path, params=[*states, ("fields", "values.id,values.state")]).json()
        single = client.get(f"{path}/{pr.id}").json()
    assert plain and all("reviewers" not in v and "participants" not in v for v in plain)
    assert all("reviewers" in v and "participants" not in v for v in plus["values"])
    assert all("reviewers" in v for v in short["values"])
    assert ids == {"values": [{"id": v["id"], "state": v["state"]} for v in plain]}
    assert "reviewers" in single and "participants" in single


def test_pull_requests_default_to_open_and_state_repeats(cloud_sandbox):
    repo = max(cloud_sandbox.world.iter_repositories(), key=lambda r: len(r.pull_requests))
    path = f"repositories/{WS}/{repo.slug}/pullrequests"
    with api_client(cloud_sandbox) as client:
        default = client.get(path).json()
        merged_declined = client.get(path, params=[("state", "MERGED"), ("state", "DECLINED")])
        sorted_ = client.get(path, params=[("state", "MERGED"), ("sort", "-updated_on")])
    assert {v["state"] for v in default["values"]} <= {"OPEN"}
    assert default["size"] == sum(pr.state == "OPEN" for pr in repo.pull_requests.values())
    wanted = {pr.id for pr in repo.pull_requests.values() if pr.state in ("MERGED", "DECLINED")}
    assert {v["id"] for v in merged_declined.json()["values"]} == wanted
    stamps = [v["updated_on"] for v in sorted_.json()["values"]]
    assert stamps == sorted(stamps, reverse=True)
    for value in default["values"]:
        assert len(value["source"]["commit"]["hash"]) == 12


# -- commits and source --------------------------------------------------------------------------


def test_commits_use_iterator_pages_to_the_end(cloud_sandbox):
    repo = first_repo(cloud_sandbox)
    path = f"repositories/{WS}/{repo.slug}/commits/{repo.mainbranch}"
    with api_client(cloud_sandbox) as client:
        pages = all_pages(client, path, params={"pagelen": 2})
        missing = client.get(f"repositories/{WS}/{repo.slug}/commits/no-such-branch")
    hashes = [c["hash"] for page in pages for c in page["values"]]
    expected = [c.hash for c in repo.history(repo.branches[repo.mainbranch])]
    assert hashes == expected
    assert all(set(page) <= {"pagelen", "values", "next"} for page in pages)
    token = parse_qs(urlsplit(pages[0]["next"]).query)["page"][0]
    assert not token.isdigit()
    assert missing.status_code == 404 and missing.json()["type"] == "error"
    with api_client(cloud_sandbox) as client:
        every = all_pages(client, f"repositories/{WS}/{repo.slug}/commits", {"pagelen": 100})
    assert {c["hash"] for p in every for c in p["values"]} == {
        c.hash for c in repo.history(*repo.branches.values())
    }
    commit = pages[0]["values"][0]
    assert len(commit["hash"]) == 40 and commit["author"]["raw"]


def test_src_serves_raw_bytes_meta_and_directories(cloud_sandbox):
    world = cloud_sandbox.world
    repo = first_repo(cloud_sandbox)
    world.file_write(workspace=WS, slug=repo.slug, path="catalog-info.yaml", content="kind: X\n")
    base = f"repositories/{WS}/{repo.slug}/src/{repo.mainbranch}"
    with api_client(cloud_sandbox) as client:
        raw = client.get(f"{base}/catalog-info.yaml")
        meta = client.get(f"{base}/catalog-info.yaml", params={"format": "meta"})
        missing = client.get(f"{base}/nope.yaml")
        listing = client.get(f"{base}/")
        by_hash = client.get(
            f"repositories/{WS}/{repo.slug}/src/{repo.branches[repo.mainbranch][:12]}/README.md"
        )
    assert raw.status_code == 200 and raw.content == b"kind: X\n"
    assert raw.headers["content-type"] == "application/x-yaml"
    assert meta.json()["type"] == "commit_file" and meta.json()["size"] == 8
    assert missing.status_code == 404
    assert "catalog-info.yaml" in {v["path"] for v in listing.json()["values"]}
    assert by_hash.status_code == 200 and by_hash.content.startswith(b"# ")


def test_posting_to_src_commits_files_and_409s_on_a_stale_parent(cloud_sandbox):
    cloud_sandbox.world.credentials.add_access_token(
        "writer", workspace=WS, scopes=["repository:write"]
    )
    repo = first_repo(cloud_sandbox)
    tip = repo.branches[repo.mainbranch]
    path = f"repositories/{WS}/{repo.slug}/src"
    with api_client(cloud_sandbox, token="writer") as client:
        created = client.post(
            path,
            data={"message": "Add catalog", "branch": repo.mainbranch, "parents": tip},
            files={"/catalog-info.yaml": ("catalog-info.yaml", b"kind: Component\n")},
        )
        new_tip = repo.branches[repo.mainbranch]
        stale = client.post(path, data={"/x.txt": "x", "parents": tip, "branch": repo.mainbranch})
        form = client.post(path, data={"/notes/readme.txt": "hello", "message": "Notes"})
        content = client.get(f"{path}/{repo.mainbranch}/notes/readme.txt")
        catalog = client.get(f"{path}/{repo.mainbranch}/catalog-info.yaml")
    assert created.status_code == 201
    assert created.headers["location"].endswith(f"/commit/{new_tip}")
    assert repo.commits[new_tip].parents == [tip]
    assert stale.status_code == 409
    assert form.status_code == 201
    assert content.content == b"hello" and catalog.content == b"kind: Component\n"
    assert repo.commits[repo.branches[repo.mainbranch]].message == "Notes"


def test_posting_to_src_needs_the_write_scope(cloud_sandbox):
    repo = first_repo(cloud_sandbox)
    with api_client(cloud_sandbox) as client:
        response = client.post(f"repositories/{WS}/{repo.slug}/src", data={"/a.txt": "a"})
    assert response.status_code == 403
    assert "repository:write" in response.json()["error"]["message"]


# -- authentication ------------------------------------------------------------------------------


def test_each_way_to_authenticate(cloud_sandbox):
    world = cloud_sandbox.world
    member = world.account(world.workspaces[WS].members[0])
    world.credentials.add_api_token(email=member.email, token="api-token-1")
    world.credentials.add_app_password(username=member.nickname, password="app-pw-1")
    url = f"{cloud_sandbox.api_url}/repositories/{WS}"
    bearer = httpx.get(url, headers={"Authorization": f"Bearer {SANDBOX_TOKEN}"})
    token_auth = httpx.get(url, headers=basic("x-token-auth", SANDBOX_TOKEN))
    api_token = httpx.get(url, headers=basic(member.email, "api-token-1"))
    app_password = httpx.get(url, headers=basic(member.nickname, "app-pw-1"))
    world.credentials.settings.app_passwords_enabled = True
    app_password_enabled = httpx.get(url, headers=basic(member.nickname, "app-pw-1"))
    assert bearer.status_code == token_auth.status_code == api_token.status_code == 200
    assert app_password.status_code == 401  # retired on 2026-06-09 unless switched on
    assert "API token" in app_password.json()["error"]["detail"]
    assert app_password_enabled.status_code == 200


def test_bad_credentials_get_bitbuckets_401_body(cloud_sandbox):
    url = f"{cloud_sandbox.api_url}/repositories/{WS}"
    wrong = httpx.get(url, headers={"Authorization": "Bearer nope"})
    wrong_basic = httpx.get(url, headers=basic("someone@example.com", "nope"))
    anonymous_user = httpx.get(f"{cloud_sandbox.api_url}/user")
    assert wrong.status_code == wrong_basic.status_code == anonymous_user.status_code == 401
    assert wrong.json() == {
        "type": "error",
        "error": {"message": "Token is invalid, expired, or not supported for this endpoint."},
    }
    assert wrong_basic.json()["type"] == "error"
    assert anonymous_user.headers["www-authenticate"].startswith("Basic")


def test_a_missing_scope_is_a_403_naming_it(cloud_sandbox):
    world = cloud_sandbox.world
    world.credentials.add_access_token("repo-only", workspace=WS, scopes=["repository"])
    repo = first_repo(cloud_sandbox)
    with api_client(cloud_sandbox, token="repo-only") as client:
        repos = client.get(f"repositories/{WS}")
        prs = client.get(f"repositories/{WS}/{repo.slug}/pullrequests")
        projects = client.get(f"workspaces/{WS}/projects")
    assert repos.status_code == 200
    assert prs.status_code == projects.status_code == 403
    error = prs.json()["error"]
    assert "pullrequest" in error["message"]
    assert error["data"] == {"required": ["pullrequest"], "granted": ["repository"]}


def test_pullrequest_scope_implies_repository(cloud_sandbox):
    credentials = cloud_sandbox.world.credentials
    credentials.add_access_token("pr-only", workspace=WS, scopes=["pullrequest"])
    with api_client(cloud_sandbox, token="pr-only") as client:
        assert client.get(f"repositories/{WS}").status_code == 200


def test_tokens_see_only_their_workspace_project_or_repository(make_cloud_sandbox):
    from tests.sandbox.fixtures import cloud_world_factory

    world = cloud_world_factory(workspaces=2, repos=12)
    server = make_cloud_sandbox(world)
    repo = next(r for r in world.iter_repositories() if r.workspace == WS)
    world.credentials.add_access_token("project-token", workspace=WS, project=repo.project_key)
    world.credentials.add_access_token("repo-token", workspace=WS, repository=repo.slug)
    with api_client(server) as client:
        other = client.get("repositories/globex")
        unknown = client.get("workspaces/nowhere")
    with api_client(server, token="project-token") as client:
        project_repos = client.get(f"repositories/{WS}", params={"pagelen": 100}).json()
    with api_client(server, token="repo-token") as client:
        repo_repos = client.get(f"repositories/{WS}").json()
    assert other.status_code == unknown.status_code == 404
    assert {v["project"]["key"] for v in project_repos["values"]} == {repo.project_key}
    assert [v["uuid"] for v in repo_repos["values"]] == [repo.uuid]


def test_anonymous_callers_see_public_repositories_only(cloud_sandbox):
    public = {r.uuid for r in cloud_sandbox.world.iter_repositories() if not r.is_private}
    private = next(r for r in cloud_sandbox.world.iter_repositories() if r.is_private)
    page = httpx.get(f"{cloud_sandbox.api_url}/repositories/{WS}", params={"pagelen": 100})
    hidden = httpx.get(f"{cloud_sandbox.api_url}/repositories/{WS}/{private.slug}")
    assert {v["uuid"] for v in page.json()["values"]} == public
    assert hidden.status_code == 401


# -- OAuth 2 -------------------------------------------------------------------------------------


@pytest.fixture
def consumer(cloud_sandbox):
    return cloud_sandbox.world.credentials.add_oauth_consumer(
        client_id="client-1", secret="secret-1", callback_url="http://localhost:9/callback"
    )


def _authorize(server, state="xyz") -> httpx.Response:
    return httpx.get(
        f"{server.url}/site/oauth2/authorize",
        params={"client_id": "client-1", "response_type": "code", "state": state},
    )


def _token(server, client_secret: str = "secret-1", **form) -> httpx.Response:  # noqa: S107
    url = f"{server.url}/site/oauth2/access_token"
    return httpx.post(url, data=form, auth=("client-1", client_secret))


def test_oauth_code_refresh_and_expiry(cloud_sandbox, consumer):
    redirect = _authorize(cloud_sandbox)
    assert redirect.status_code == 302
    location = urlsplit(redirect.headers["location"])
    query = parse_qs(location.query)
    assert location.path == "/callback" and query["state"] == ["xyz"]
    tokens = _token(cloud_sandbox, grant_type="authorization_code", code=query["code"][0]).json()
    assert tokens["token_type"] == "bearer" and tokens["expires_in"] == 7200
    assert set(tokens) >= {"access_token", "refresh_token", "scopes", "state"}
    reused = _token(cloud_sandbox, grant_type="authorization_code", code=query["code"][0])
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"

    with api_client(cloud_sandbox, token=tokens["access_token"]) as client:
        assert client.get("user").status_code == 200
        cloud_sandbox.world.clock.advance(7201)
        expired = client.get("user")
    assert expired.status_code == 401
    assert expired.json()["error"]["message"].startswith("Access token expired.")

    refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    renewed = _token(cloud_sandbox, **refresh)
    with api_client(cloud_sandbox, token=renewed.json()["access_token"]) as client:
        assert client.get(f"repositories/{WS}").status_code == 200

    cloud_sandbox.world.credentials.revoke_refresh_token(tokens["refresh_token"])
    revoked = _token(cloud_sandbox, **refresh)
    assert revoked.status_code == 400
    assert revoked.json()["error"] == "invalid_grant" and revoked.json()["error_description"]


def test_oauth_users_read_their_profile_and_emails(cloud_sandbox):
    cloud_sandbox.world.credentials.add_oauth_consumer(
        client_id="client-1",
        secret="secret-1",
        callback_url="http://localhost:9/callback",
        scopes=["account", "email"],
    )
    code = parse_qs(urlsplit(_authorize(cloud_sandbox).headers["location"]).query)["code"][0]
    tokens = _token(cloud_sandbox, grant_type="authorization_code", code=code).json()
    with api_client(cloud_sandbox, token=tokens["access_token"]) as client:
        user = client.get("user").json()
        emails = client.get("user/emails").json()
    first = cloud_sandbox.world.account(cloud_sandbox.world.workspaces[WS].members[0])
    assert tokens["scopes"] == "account email"
    assert user["uuid"] == first.uuid and user["type"] == "user"
    assert emails["values"] == [
        {"type": "email", "email": first.email, "is_primary": True, "is_confirmed": True}
    ]


def test_oauth_client_credentials_denial_and_bad_client(cloud_sandbox, consumer):
    granted = _token(cloud_sandbox, grant_type="client_credentials")
    bad_secret = _token(cloud_sandbox, client_secret="wrong", grant_type="client_credentials")
    unsupported = _token(cloud_sandbox, grant_type="password")
    cloud_sandbox.world.credentials.settings.oauth_deny = True
    denied = parse_qs(urlsplit(_authorize(cloud_sandbox).headers["location"]).query)
    assert granted.status_code == 200 and granted.json()["access_token"]
    assert bad_secret.status_code == 401 and bad_secret.json()["error"] == "invalid_client"
    assert unsupported.json()["error"] == "unsupported_grant_type"
    assert denied["error"] == ["access_denied"] and denied["state"] == ["xyz"]


# -- rate limits ---------------------------------------------------------------------------------


def test_the_rate_limit_is_a_rolling_hour_per_credential(cloud_sandbox):
    api = cloud_sandbox.api
    api.rate_limits.configure(limits={"api-repositories": 3}, retry_after=7)
    with api_client(cloud_sandbox) as client:
        allowed = [client.get(f"repositories/{WS}") for _ in range(3)]
        refused = client.get(f"repositories/{WS}")
        elsewhere = client.get("user")
        cloud_sandbox.world.clock.advance(3601)
        later = client.get(f"repositories/{WS}")
    assert [r.status_code for r in allowed] == [200, 200, 200]
    assert allowed[0].headers["x-ratelimit-limit"] == "3"
    assert allowed[0].headers["x-ratelimit-resource"] == "api-repositories"
    assert allowed[0].headers["x-ratelimit-nearlimit"] == "false"
    assert allowed[-1].headers["x-ratelimit-nearlimit"] == "true"
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "text/plain"
    assert refused.text == "Rate limit for this resource has been exceeded"
    assert refused.headers["retry-after"] == "7"
    assert elsewhere.status_code == 200
    assert later.status_code == 200


def test_passwords_of_one_user_share_that_users_budget(cloud_sandbox):
    world = cloud_sandbox.world
    member = world.account(world.workspaces[WS].members[0])
    world.credentials.add_api_token(email=member.email, token="first")
    world.credentials.add_api_token(email=member.email, token="second")
    cloud_sandbox.api.rate_limits.configure(limits={"api-repositories": 2})
    url = f"{cloud_sandbox.api_url}/repositories/{WS}"
    statuses = [
        httpx.get(url, headers=basic(member.email, token)).status_code
        for token in ("first", "second", "second")
    ]
    with api_client(cloud_sandbox) as client:
        token_status = client.get(f"repositories/{WS}").status_code
    assert statuses == [200, 200, 429]
    assert token_status == 200  # an access token has a budget of its own


def test_a_429_carries_no_retry_after_by_default(cloud_sandbox):
    cloud_sandbox.api.rate_limits.configure(limits={"api-repositories": 1})
    with api_client(cloud_sandbox) as client:
        client.get(f"repositories/{WS}")
        refused = client.get(f"repositories/{WS}")
    assert refused.status_code == 429 and "retry-after" not in refused.headers


# -- faults --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status", "content_type"),
    [
        ("429", 429, "text/plain"),
        ("500", 500, "application/json"),
        ("502", 502, "text/html"),
        ("503", 503, "text/html"),
    ],
)
def test_injected_error_statuses(cloud_sandbox, fault, status, content_type):
    cloud_sandbox.api.faults.configure(script=[fault])
    with api_client(cloud_sandbox) as client:
        failed = client.get(f"repositories/{WS}")
        recovered = client.get(f"repositories/{WS}")
    assert failed.status_code == status
    assert failed.headers["content-type"] == content_type
    if fault == "429":
        assert failed.headers["retry-after"] in ("0", "1")
    assert recovered.status_code == 200
    assert cloud_sandbox.api.faults.injected[fault] == 1


def test_injected_slow_response(cloud_sandbox):
    cloud_sandbox.api.faults.configure(script=["slow"], slow_seconds=0.3)
    started = time.monotonic()
    with api_client(cloud_sandbox) as client:
        response = client.get(f"repositories/{WS}")
    assert response.status_code == 200 and time.monotonic() - started >= 0.3


def test_injected_dropped_connection(cloud_sandbox):
    cloud_sandbox.api.faults.configure(script=["drop"])
    with api_client(cloud_sandbox) as client, pytest.raises(httpx.RemoteProtocolError):
        client.get(f"repositories/{WS}")
    assert cloud_sandbox.api.log.entries()[-1].fault == "drop"


@pytest.mark.parametrize("fault", ["truncated", "malformed"])
def test_injected_broken_json_bodies(cloud_sandbox, fault):
    cloud_sandbox.api.faults.configure(script=[fault])
    with api_client(cloud_sandbox) as client:
        broken = client.get(f"repositories/{WS}")
        fine = client.get(f"repositories/{WS}")
    assert broken.status_code == 200
    with pytest.raises(ValueError):
        broken.json()
    assert fine.json()["values"]


def test_an_injected_empty_page_still_leads_to_every_value(cloud_sandbox):
    cloud_sandbox.api.faults.configure(script=["empty_page"])
    with api_client(cloud_sandbox) as client:
        pages = all_pages(client, f"repositories/{WS}")
    assert pages[0]["values"] == [] and pages[0]["next"]
    uuids = [v["uuid"] for page in pages for v in page["values"]]
    assert len(uuids) == len(set(uuids)) == 24


def test_an_injected_repeated_next_points_back_at_a_fetched_page(cloud_sandbox):
    cloud_sandbox.api.faults.configure(script=["repeat_next"])
    with api_client(cloud_sandbox) as client:
        first = client.get(f"repositories/{WS}").json()
        second = client.get(first["next"]).json()
    assert second["next"] == first["next"]


def test_fault_rates_are_reproducible_from_the_seed(cloud_sandbox):
    def statuses() -> list[int]:
        cloud_sandbox.api.faults.configure(seed=11, rate_503=0.3, rate_500=0.2)
        with api_client(cloud_sandbox) as client:
            return [client.get(f"repositories/{WS}").status_code for _ in range(20)]

    first = statuses()
    assert first == statuses()
    assert {200, 503} <= set(first)


def test_faults_are_off_by_default_and_spare_the_control_api(cloud_sandbox):
    assert cloud_sandbox.api.faults.config.rate_503 == 0
    cloud_sandbox.api.faults.configure(rate_503=1.0)
    control = httpx.get(f"{cloud_sandbox.url}/_sandbox/world")
    assert control.status_code == 200
